"""How long a background loop waits after a pass that found nothing (issue #14: the idle
network). The relay, the notification dispatcher, the referral's timers and the audit tree
each poll their database every second or two, which on a quiet network was about a fifth of
its CPU (a transaction and its round trips per pass, in the service and in PostgreSQL).
What gives them work in their own process wakes them at once, so the poll only finds what
another process did (a replica, the operator's CLI) or a time that came due: that can wait
longer while nothing happens. Each empty pass doubles the wait, from the loop's interval up
to the quiet wait (PUNTE_POLL_QUIET_SECONDS); a pass that finds work, or a wake, goes back
to the interval."""
from __future__ import annotations

import asyncio
import contextlib


class QuietWait:
    """The wait before a loop's next pass: ``interval`` after work, doubling with each pass
    that finds nothing up to ``quiet`` (a ``quiet`` below the interval: the interval)."""

    def __init__(self, interval: float, quiet: float) -> None:
        self.interval = interval
        self.longest = max(interval, quiet)
        self._next = interval

    def worked(self) -> None:
        """A pass found work, or the loop was woken: the next empty pass waits the interval."""
        self._next = self.interval

    def idle(self) -> float:
        """A pass found nothing: how long to wait now (the next empty pass waits longer)."""
        wait = self._next
        self._next = min(self._next * 2, self.longest)
        return wait

    async def rest(self, wake: asyncio.Event | None = None, seconds: float | None = None) -> None:
        """Wait after a pass that found nothing: ``idle()`` (or ``seconds``), or until ``wake``
        is set, which counts as work (what woke the loop gave it some)."""
        wait = self.idle() if seconds is None else seconds
        if wake is None:
            await asyncio.sleep(wait)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), wait)
        if wake.is_set():
            self.worked()
