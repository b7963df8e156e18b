"""Middlewares: per-chat ordering of replies, and tracking of in-flight updates for shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from errors import ChatFloodError

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


@dataclass
class _ChatQueue:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0
    # Of those waiting, the ones someone asked for: they count against the limit.
    asked: int = 0


class ChatOrder(BaseMiddleware):
    """Handles one chat's messages (and button presses) one at a time, in arrival order, reply sent included.

    So a chat's answers arrive in the order of its messages (even when a send is retried), its
    history stays in order, and one chat holds at most one place in the model's batch. Past
    ``limit`` messages waiting in one chat, a message raises ChatFloodError at once. A group message
    the bot only overhears (``unprompted`` in the handler's data: bot.access.JoinsIn) waits its turn
    too, so the history keeps the order things were said, but it is never refused nor counted against
    the limit: nobody asked, so nobody is told to wait.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queues: dict[int, _ChatQueue] = {}

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Wait for the chat's earlier messages, then handle this one."""
        chat_id = chat_of(event)
        if chat_id is None:
            return await handler(event, data)
        queue = self._queues.setdefault(chat_id, _ChatQueue())
        asked = not data.get("unprompted", False)
        if asked and queue.asked >= self._limit:
            raise ChatFloodError(f"chat {chat_id} already has {queue.asked} messages waiting")
        queue.waiting += 1
        queue.asked += asked
        try:
            async with queue.lock:
                return await handler(event, data)
        finally:
            queue.waiting -= 1
            queue.asked -= asked
            if not queue.waiting:
                del self._queues[chat_id]

    def waiting(self, chat_id: int) -> int:
        """How many of the chat's messages and presses wait or are being handled now."""
        queue = self._queues.get(chat_id)
        return queue.waiting if queue else 0


def chat_of(event: TelegramObject) -> int | None:
    """The chat of a message, or of the message under a pressed button."""
    if isinstance(event, Message):
        return event.chat.id
    if isinstance(event, CallbackQuery) and isinstance(event.message, Message):
        return event.message.chat.id
    return None


class InFlightUpdates(BaseMiddleware):
    """Outer update middleware that knows which updates are still being handled."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Run the handler with its task registered until it finishes."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await handler(event, data)
        finally:
            self._tasks.discard(task)

    @property
    def count(self) -> int:
        """Updates being handled now."""
        return len(self._tasks)

    async def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for handled updates to finish; returns how many are left."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        return len(self._tasks)
