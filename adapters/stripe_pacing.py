"""Stripe's rate limit counts HTTP requests, and one engine activity can make several (creating
an invoice is one request per line, then the invoice, then its finalisation). The server's
activity rate limit on the Stripe task queue orders the billing day's backlog (priority and
fairness, ADR 0014) but cannot bound requests; this pacer does, in the process that sends them
(ADR 0025).

A request is let go only while the trailing second holds fewer than `requests_per_second`
(rounded down) requests, on the clock read at the moment it is let go: so no one-second window,
sliding or aligned, ever holds more, whatever the jitter of the event loop. A busy event loop
that wakes a waiter late loses no capacity (the next ones catch up within the same second), and
a quiet second lends nothing to the next. Below one request per second, requests leave
`1 / requests_per_second` apart.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

_SECOND_NS = 1_000_000_000


class RequestPacer:
    def __init__(
        self, requests_per_second: float, *, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.requests_per_second = requests_per_second
        if requests_per_second >= 1:
            self.capacity, self.window_ns = math.floor(requests_per_second), _SECOND_NS
        else:
            # Whole nanoseconds, rounded up: never two requests closer than 1/rate.
            self.capacity, self.window_ns = 1, math.ceil(_SECOND_NS / requests_per_second)
        self._clock_ns = clock_ns
        self._sent: deque[int] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> int:
        """Wait for this request's turn; returns the instant (`clock_ns`) it was let go."""
        async with self._lock:  # FIFO: requests leave in the order they asked
            while True:
                now = self._clock_ns()
                while self._sent and now - self._sent[0] >= self.window_ns:
                    self._sent.popleft()
                if len(self._sent) < self.capacity:
                    self._sent.append(now)
                    return now
                await asyncio.sleep((self._sent[0] + self.window_ns - now) / _SECOND_NS)
