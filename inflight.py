"""Track updates being handled, so shutdown can wait for in-flight replies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject


class InFlightUpdates(BaseMiddleware):
    """Outer update middleware that knows which updates are still being handled."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        """Run the handler with its task registered until it finishes."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await handler(event, data)
        finally:
            self._tasks.discard(task)

    async def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for handled updates to finish; returns how many are left."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        return len(self._tasks)
