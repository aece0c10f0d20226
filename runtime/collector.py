"""Python's garbage collector in a service process: settled once the service has started,
and its work counted for /metrics (decision 0049).

Every message a service handles makes a few hundred short-lived containers (the decoded
event, dicts of headers and rows, SQLAlchemy's results). With Python's default thresholds
(700, 10, 10) the young generation was collected every 700 of them, and each full
collection walked the ~170 000 objects start-up leaves (imports, schemas, the app), none of
which ever becomes garbage: about a tenth of the services' CPU under load. Settled, the
collector takes a tenth of what it took; the services' CPU fell by up to 6 %, within this
machine's spread (bench/README.md, the nineteenth session). So, after start-up:

- what start-up made is frozen (``gc.freeze``): the collector no longer walks it;
- the young generation is collected every ``young_threshold`` allocations net of frees:
  a batch's objects mostly die by reference counting before that, so few survive into the
  older generations, and full passes become rare.

Reference counting still frees what is not in a cycle at once; a cycle waits for the next
young collection (at most ``young_threshold`` containers, a few MB)."""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

GENERATIONS = 3


@dataclass
class CollectorClock:
    """Collections and the CPU seconds spent in them, per generation, since it was installed
    (a ``gc.callbacks`` entry: the collector calls it at each collection's start and stop,
    in the thread it collects in). CPU time, not wall time: on a busy machine a collection
    may wait for a core, and wall time counted that too (about twice the CPU time here)."""

    collections: list[int] = field(default_factory=lambda: [0] * GENERATIONS)
    seconds: list[float] = field(default_factory=lambda: [0.0] * GENERATIONS)
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            generation = info["generation"]
            self.collections[generation] += 1
            self.seconds[generation] += time.thread_time() - self._started


# One per process, as the collector is.
CLOCK = CollectorClock()


def settle(young_threshold: int) -> None:
    """Once the service has started (its imports, app, engine and consumers made): one full
    collection, then everything left frozen, the young threshold raised, and the clock
    installed. Called again, it collects, freezes what was made since, and sets the threshold."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
    if CLOCK not in gc.callbacks:
        gc.callbacks.append(CLOCK)


@dataclass(frozen=True)
class CollectorState:
    """What a scrape shows of the collector (runtime.metrics)."""

    collections: tuple[int, ...]
    seconds: tuple[float, ...]
    frozen: int
    young_threshold: int


def state() -> CollectorState:
    return CollectorState(tuple(CLOCK.collections), tuple(CLOCK.seconds), gc.get_freeze_count(), gc.get_threshold()[0])
