"""The model side of the bot: load the backend once, keep each chat's history, batch generation off the event loop.

Nothing here imports aiogram; main.py wires this to the handlers.
"""

from __future__ import annotations

import logging
import time

from errors import EmptyMessageError, ReplyTimeoutError
from inference.backend import Outcome, Request
from inference.batching import BatchingPool
from inference.dialogue import merge_turns
from inference.sampling import STYLES
from inference.transformers_backend import TransformersBackend
from settings import Settings
from store import BOT_AUTHOR, ChatStore, Turn

logger = logging.getLogger(__name__)

# Stored turns read per chat: enough for any CONTEXT_TURNS once consecutive turns are merged.
_HISTORY_WINDOW = 64


class ReplyGenerator:
    """Replies to chats: keeps each chat's history and batches generation in a bounded pool."""

    def __init__(self, model: TransformersBackend, store: ChatStore, settings: Settings) -> None:
        self.model = model
        self._store = store
        self._timeout = settings.generation_timeout
        self._default_context_turns = settings.context_turns
        self._default_style = settings.reply_style
        self._pool: BatchingPool[Request, Outcome] = BatchingPool(
            model.generate,
            workers=settings.workers,
            max_batch=settings.max_batch,
            window=settings.batch_window_ms / 1000,
            max_pending=settings.max_pending,
        )

    @property
    def pending(self) -> int:
        """Replies queued or being generated."""
        return self._pool.pending

    def warm_up(self) -> None:
        """Run one short generation so the first user doesn't pay for lazy initialisation."""
        started = time.perf_counter()
        self._pool.run_sync([Request(("привет",), time.monotonic() + 60)])
        logger.info("warm-up generation took %.2f s", time.perf_counter() - started)

    async def reply(self, chat_id: int, text: str, author: str) -> str:
        """Reply to ``text`` from ``author`` in ``chat_id``; both turns are stored only if a reply was made.

        Callers handle one chat's messages one at a time (bot.middlewares.ChatOrder) so its history stays
        in order. Raises EmptyMessageError, BusyError (queue full) and ReplyTimeoutError. An empty
        generation returns "" (no reply, nothing stored): the caller picks what to say instead.
        """
        clean = self.model.clean_user_text(text)
        if not clean:
            raise EmptyMessageError(text)
        preferences = self._store.preferences(chat_id)
        context_turns = preferences.context_turns or self._default_context_turns
        history = self._store.recent_turns(chat_id, _HISTORY_WINDOW)
        turns = merge_turns([*history, Turn(author, clean)])[-context_turns:]
        style = preferences.style if preferences.style in STYLES else self._default_style
        request = Request(tuple(turns), time.monotonic() + self._timeout, style)
        outcome = await self._pool.submit(request, key=style)
        if outcome.timed_out:
            raise ReplyTimeoutError(f"generation for chat {chat_id} ran past {self._timeout} s")
        if not outcome.text:
            return ""
        self._store.add_turns(chat_id, [Turn(author, clean), Turn(BOT_AUTHOR, outcome.text)])
        return outcome.text

    def forget(self, chat_id: int) -> None:
        """Clear the chat's history."""
        self._store.clear(chat_id)

    def shutdown(self) -> None:
        """Let running generations finish and stop the pool."""
        self._pool.shutdown()
