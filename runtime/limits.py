"""Limits that keep one caller from wearing a service down, the same in every service:

- ``BodyLimit``: request bodies over ``Settings.http_max_body_bytes`` are refused, on the
  declared Content-Length or, for a chunked body, as soon as the bytes read pass it
  (413 TOO_LARGE).
- ``Rates``: the `limits` library's moving window, in this process's memory: every
  authenticated call per person (token subject) and per institution (``admit``, called
  where tokens are checked), and per client address on sign-in (``throttle``)
  (429 RATE_LIMITED with Retry-After).
- ``StreamSlots``: open server-sent-event streams per institution and in all.
- ``Wakeups``: a request waiting for a row another process writes is woken by PostgreSQL
  NOTIFY on one listening connection per process, instead of polling the database.

Counts are per process: with N replicas behind a balancer the effective limits are up to
N times the settings. Behind a reverse proxy, the client address is the proxy's unless
uvicorn is told to trust its forwarded headers (``--forwarded-allow-ips``)."""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import asyncpg
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.refusals import reason
from runtime.db import connect
from runtime.log import get_logger
from runtime.settings import Settings

if TYPE_CHECKING:
    from runtime.service import Runtime
    from runtime.tokens import Principal

log = get_logger("runtime.limits")
T = TypeVar("T")


# --- request bodies ------------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    """Raised while the app reads a body that has grown past the maximum; FastAPI passes an
    HTTPException from the body on unchanged, so the app's handler answers it."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=reason("TOO_LARGE", f"the body is over {max_bytes} bytes"))


class BodyLimit:
    """Pure ASGI middleware: a body over ``max_bytes`` is refused with 413 TOO_LARGE."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = BodyTooLarge(self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            # Refused before a byte of it is read, and before anything else is looked at.
            await _answer(refusal)(scope, receive, send)
            return
        read = 0
        started = False

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_bytes:
                    raise refusal
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await _answer(refusal)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _answer(refusal: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": refusal.detail}, status_code=refusal.status_code, headers=refusal.headers)


# --- request rates -------------------------------------------------------------------------

AddressKind = Literal["token", "login"]


class RateLimited(HTTPException):
    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(429, detail=reason("RATE_LIMITED", detail), headers={"Retry-After": str(retry_after)})


class Rates:
    """Moving-window counters (the `limits` library, in memory) for people, institutions
    and client addresses; each rate in the library's notation, e.g. "600/minute" or
    "20/second;600/minute"."""

    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._principal = parse_many(settings.rate_per_principal)
        self._institution = parse_many(settings.rate_per_institution)
        self._address: dict[AddressKind, list[RateLimitItem]] = {
            "token": parse_many(settings.rate_token_per_address),
            "login": parse_many(settings.rate_login_per_address),
        }

    def _wait(self, items: list[RateLimitItem], *key: str) -> int | None:
        """Count one call against ``items``; None if within them, else the seconds until
        the window lets the next one in."""
        for item in items:
            if not self._limiter.hit(item, *key):
                reset = self._limiter.get_window_stats(item, *key).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None

    def admit(self, principal: Principal) -> None:
        if (wait := self._wait(self._principal, "principal", principal.subject)) is not None:
            raise RateLimited("too many requests from this person", wait)
        if principal.institution and (wait := self._wait(self._institution, "institution",
                                                         principal.institution)) is not None:
            raise RateLimited("too many requests from this institution", wait)

    def admit_address(self, kind: AddressKind, address: str) -> None:
        if (wait := self._wait(self._address[kind], kind, address)) is not None:
            raise RateLimited("too many attempts from this address", wait)


# --- server-sent event streams -------------------------------------------------------------

STREAM_RETRY_SECONDS = 10


class StreamSlot:
    """One open stream; ``release`` may be called more than once (it counts once)."""

    def __init__(self, slots: StreamSlots, institution: str) -> None:
        self._slots = slots
        self._institution = institution
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._give_back(self._institution)

    async def aclose(self) -> None:
        """``release`` for a response's background task (a plain function would run on a
        worker thread)."""
        self.release()

    async def around(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """``stream``, releasing the slot when it ends, fails or is cancelled (the client
        disconnected)."""
        try:
            async for chunk in stream:
                yield chunk
        finally:
            self.release()


class StreamSlots:
    def __init__(self, per_institution: int, total: int) -> None:
        self.per_institution = per_institution
        self.total = total
        self._open: Counter[str] = Counter()

    def take(self, institution: str) -> StreamSlot:
        """A slot for a new stream of ``institution``'s people, or the refusal."""
        if self._open[institution] >= self.per_institution:
            raise RateLimited("too many open streams for this institution", STREAM_RETRY_SECONDS)
        if self._open.total() >= self.total:
            raise RateLimited("too many open streams", STREAM_RETRY_SECONDS)
        self._open[institution] += 1
        return StreamSlot(self, institution)

    def _give_back(self, institution: str) -> None:
        self._open[institution] -= 1
        if self._open[institution] <= 0:
            del self._open[institution]

    def open(self) -> int:
        return self._open.total()


# --- everything an app holds ----------------------------------------------------------------


class Limits:
    """The limits of one app (one process), built from its settings."""

    def __init__(self, settings: Settings) -> None:
        self.max_body_bytes = settings.http_max_body_bytes
        self.rates = Rates(settings)
        self.streams = StreamSlots(settings.streams_per_institution, settings.streams_total)


def limits_of(app: Any) -> Limits:
    """The app's limits: set up by runtime.service.create_app, else (test apps, the
    identity provider) built on first use from the app's settings or the environment."""
    found: Limits | None = getattr(app.state, "limits", None)
    if found is None:
        runtime = getattr(app.state, "runtime", None)
        found = app.state.limits = Limits(runtime.settings if runtime is not None else Settings())
    return found


async def admit(request: Request, principal: Principal) -> None:
    """Count an authenticated call against its person's and institution's rates, once per
    request however many dependencies check the token."""
    if getattr(request.state, "rate_counted", False):
        return
    request.state.rate_counted = True
    limits_of(request.app).rates.admit(principal)


def throttle(kind: AddressKind, account: Callable[[Request], Awaitable[str]]) -> Callable[[Request], Awaitable[None]]:
    """FastAPI dependency: sign-in attempts per client address and the account they name
    ("token": the identity provider's /token; "login": the pages' /ui/login). Per account
    too, since many people share an address: an office behind one NAT, and every page
    sign-in reaches /token from its service's own address."""

    async def by_address(request: Request) -> None:
        address = request.client.host if request.client else "unknown"
        limits_of(request.app).rates.admit_address(kind, f"{address}|{await account(request)}")

    return by_address


# --- waiting for a row another process writes ------------------------------------------------

WAKEUPS = "wakeups"  # Runtime.extras key


class Wakeups:
    """Requests waiting for a key on a channel, woken by NOTIFY on one dedicated
    connection (LISTEN), opened on first use and again after it is lost."""

    def __init__(self, url: str, name: str) -> None:
        self._url = url
        self._name = name
        self._connection: asyncpg.Connection | None = None
        self._channels: set[str] = set()
        self._waiting: defaultdict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._lock = asyncio.Lock()

    async def _listen(self, channel: str) -> None:
        async with self._lock:
            if self._connection is None or self._connection.is_closed():
                self._connection = await connect(
                    self._url, timeout=5, server_settings={"application_name": f"punte-{self._name}-listen"})
                self._connection.add_termination_listener(self._lost)
                self._channels = set()
            if channel not in self._channels:
                await self._connection.add_listener(channel, self._notified)
                self._channels.add(channel)

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        for woken in self._waiting.get((channel, payload), ()):
            woken.set()

    def _lost(self, connection: Any) -> None:
        # Notifications may have been missed: every waiter looks again.
        log.warning("listening connection lost; waiters look again")
        for waiters in self._waiting.values():
            for woken in waiters:
                woken.set()

    async def wait(self, channel: str, key: str, look: Callable[[], Awaitable[T | None]],
                   seconds: float, recheck_seconds: float) -> T | None:
        """What ``look`` finds, once it finds something or after ``seconds``. It looks
        again when ``key`` is notified on ``channel``, and every ``recheck_seconds`` in
        case a notification was missed (or the listening connection is down)."""
        if seconds <= 0:
            return await look()
        woken = asyncio.Event()
        self._waiting[(channel, key)].add(woken)
        try:
            try:
                await self._listen(channel)  # before the first look, so nothing slips between
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("cannot listen; waiting by re-checking", error=type(exc).__name__)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while True:
                woken.clear()
                found = await look()
                left = deadline - loop.time()
                if found is not None or left <= 0:
                    return found
                with suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(recheck_seconds, left))
        finally:
            waiters = self._waiting[(channel, key)]
            waiters.discard(woken)
            if not waiters:
                del self._waiting[(channel, key)]

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            await connection.close()


def wakeups_of(runtime: Runtime) -> Wakeups:
    """The process's one listening connection for ``runtime``'s database."""
    found: Wakeups | None = runtime.extras.get(WAKEUPS)
    if found is None:
        url = runtime.engine.url.render_as_string(hide_password=False)
        found = runtime.extras[WAKEUPS] = Wakeups(url, runtime.name)
    return found


def closing(lifespan: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``lifespan`` (an app's), then the listening connection closed at shutdown."""

    @asynccontextmanager
    async def wrapped(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            try:
                yield state
            finally:
                runtime = getattr(app.state, "runtime", None)
                if runtime is not None and WAKEUPS in runtime.extras:
                    await runtime.extras[WAKEUPS].close()

    return wrapped
