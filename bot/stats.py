"""Counters for the admin's /stats: replies, latency, chats and errors since start."""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date


@dataclass
class BotStats:
    """What the bot has done since it started; latencies keep the last ``window`` replies."""

    model_summary: str = ""
    queue_depth: Callable[[], int] = lambda: 0
    subscription_count: Callable[[], int] = lambda: 0
    window: int = 1000
    started: float = field(default_factory=time.monotonic)
    errors: int = 0
    recovered: int = 0
    unprompted: int = 0
    unprompted_skipped: int = 0
    replies_today: int = 0
    _today: date = field(default_factory=date.today)
    _latencies: deque[float] = field(init=False)
    _chats: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._latencies = deque(maxlen=self.window)

    def record_reply(self, chat_id: int, seconds: float) -> None:
        """Count one reply and how long it took."""
        if date.today() != self._today:
            self._today, self.replies_today = date.today(), 0
        self.replies_today += 1
        self._latencies.append(seconds)
        self._chats.add(chat_id)

    def record_unprompted(self) -> None:
        """Count one answer to a group's message nobody addressed to the bot (REPLY_CHANCE)."""
        self.unprompted += 1

    def record_unprompted_skipped(self) -> None:
        """Count one unprompted answer left out because the pool was busy."""
        self.unprompted_skipped += 1

    def record_error(self) -> None:
        """Count one failed update."""
        self.errors += 1

    @property
    def chats_served(self) -> int:
        """Distinct chats answered since start."""
        return len(self._chats)

    @property
    def uptime(self) -> float:
        """Seconds since start."""
        return time.monotonic() - self.started

    def latency_percentiles(self) -> tuple[float, float] | None:
        """p50 and p95 reply latency in seconds, or None before the first reply."""
        if not self._latencies:
            return None
        if len(self._latencies) == 1:
            return self._latencies[0], self._latencies[0]
        cuts = statistics.quantiles(self._latencies, n=20, method="inclusive")
        return statistics.median(self._latencies), cuts[18]
