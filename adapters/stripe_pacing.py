"""Stripe's rate limit counts HTTP requests, and one engine activity can make several (creating
an invoice is one request per line, then the invoice, then its finalisation). The server's
activity rate limit on the Stripe task queue orders the billing day's backlog (priority and
fairness, ADR 0014) but cannot bound requests; this pacer does, in the process that sends them
(ADR 0025).

Every request waits for its turn: two requests leave at least `1 / requests_per_second` apart,
measured on the clock read when the request is let go. So any one-second window holds at most
`requests_per_second` of them, whatever the jitter of the event loop, and a burst never
borrows from a quiet second before it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable


class RequestPacer:
    def __init__(
        self, requests_per_second: float, *, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.requests_per_second = requests_per_second
        # Whole nanoseconds, rounded up: float steps would let 26 fit in a second at 25/s.
        self._interval_ns = math.ceil(1_000_000_000 / requests_per_second)
        self._clock_ns = clock_ns
        self._last_ns: int | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> int:
        """Wait for this request's turn; returns the instant (`clock_ns`) it was let go."""
        async with self._lock:  # FIFO: requests leave in the order they asked
            while True:
                now = self._clock_ns()
                if self._last_ns is None or now - self._last_ns >= self._interval_ns:
                    self._last_ns = now
                    return now
                await asyncio.sleep((self._last_ns + self._interval_ns - now) / 1e9)
