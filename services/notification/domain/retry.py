"""How often and how long a channel keeps trying: capped exponential backoff."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff after the n-th failed attempt: ``min(base * factor**(n-1), cap)`` seconds."""

    base: float = 2.0
    factor: float = 2.0
    cap: float = 600.0
    max_attempts: int = 8
    timeout: float = 10.0  # seconds per request
    batch: int = 50  # deliveries taken per deliver_due
    concurrency: int = 10  # requests in flight at once

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.base * self.factor ** max(attempts - 1, 0), self.cap))
