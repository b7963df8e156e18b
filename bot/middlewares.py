"""Middlewares: per-chat ordering of replies (by arrival), and tracking of in-flight updates for shutdown."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, Update

from errors import ChatFloodError

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


@dataclass(eq=False)
class Turn:
    """One update's place in its chat's line."""

    update_id: int
    # Set once ChatOrder has let the update wait for its turn, or once it finished: later ones may then decide.
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # In ChatOrder: waiting for the updates ahead, or being handled.
    inside: bool = False
    # Let in by ChatOrder, and someone waits for its answer (not a group's talk the bot only overhears).
    asked: bool = False


TURN = "chat_turn"


class ChatArrivals(BaseMiddleware):
    """Outer update middleware: gives each message and button press its place in its chat's line as it arrives.

    It must be first, before any filter: aiogram runs plain (non-async) filters, F.text among them, in
    worker threads, so updates can reach the handlers in another order than they came. ChatOrder keeps
    the order given here.
    """

    def __init__(self) -> None:
        self._lines: dict[int, list[Turn]] = {}

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Queue the update in its chat's line (by update id) until it has been handled."""
        # Not event.event: an update of a kind this aiogram doesn't know has none, and aiogram itself lets it go.
        chat_id = chat_of(event.message or event.callback_query) if isinstance(event, Update) else None
        if chat_id is None:
            return await handler(event, data)
        turn = Turn(event.update_id)
        line = self._lines.setdefault(chat_id, [])
        bisect.insort(line, turn, key=lambda queued: queued.update_id)
        data[TURN] = turn
        try:
            return await handler(event, data)
        finally:
            turn.decided.set()
            turn.done.set()
            line.remove(turn)
            if not line:
                del self._lines[chat_id]

    def ahead_of(self, chat_id: int, turn: Turn) -> list[Turn]:
        """The chat's updates that came before ``turn`` and are still being handled."""
        line = self._lines[chat_id]
        return line[: line.index(turn)]

    def inside(self, chat_id: int) -> int:
        """How many of the chat's updates are in ChatOrder now, waiting or being handled."""
        return sum(turn.inside for turn in self._lines.get(chat_id, ()))


class ChatOrder(BaseMiddleware):
    """Handles one chat's messages (and button presses) one at a time, in arrival order, reply sent included.

    So a chat's answers arrive in the order of its messages (even when a send is retried), its
    history stays in order, and one chat holds at most one place in the model's batch. A message
    that finds ``limit`` asked messages ahead of it raises ChatFloodError at once. A group message
    the bot only overhears (``unprompted`` in the handler's data: bot.access.JoinsIn) waits its turn
    too, so the history keeps the order things were said, but it is never refused nor counted against
    the limit: nobody asked, so nobody is told to wait. The order is the one ChatArrivals gave.
    """

    def __init__(self, arrivals: ChatArrivals, limit: int) -> None:
        self._arrivals = arrivals
        self._limit = limit

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Wait for the chat's earlier messages, then handle this one."""
        chat_id = chat_of(event)
        if chat_id is None:
            return await handler(event, data)
        turn: Turn = data[TURN]
        turn.inside = True
        ahead = self._arrivals.ahead_of(chat_id, turn)
        # Until those ahead are placed, it isn't known how many of them wait for an answer.
        for earlier in ahead:
            await earlier.decided.wait()
        asked_ahead = sum(earlier.asked and not earlier.done.is_set() for earlier in ahead)
        asked = not data.get("unprompted", False)
        if asked and asked_ahead >= self._limit:
            raise ChatFloodError(f"chat {chat_id} already has {asked_ahead} messages waiting")
        turn.asked = asked
        turn.decided.set()
        for earlier in ahead:
            await earlier.done.wait()
        return await handler(event, data)

    def waiting(self, chat_id: int) -> int:
        """How many of the chat's messages and presses wait or are being handled now."""
        return self._arrivals.inside(chat_id)


def chat_of(event: TelegramObject | None) -> int | None:
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
