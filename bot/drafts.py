"""STREAMING: a reply shows in a private chat while it is written (sendMessageDraft), with a button that stops it.

A draft is ephemeral: the final message is still sent with sendMessage, exactly as without drafts. Drafts
never hold the reply up: each reply has one sender task, one draft in flight at most (a newer text waits for
it and replaces any older one waiting), and its failures end there. A 429, a 5xx or a network error skips
that draft (never retried); a refusal of the method itself (a Bot API server too old to know it) turns
drafts off for the whole process, with one log line. Groups keep "typing…": drafts exist in private chats only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Protocol

from aiogram import Bot, Router
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import Message, MessageGenerationStopped

from bot.access import is_private
from bot.inbox import RECOVERING
from bot.replies import split_text
from inference.progress import ReplyProgress

logger = logging.getLogger(__name__)

# STREAMING's values.
AUTO, OFF = "auto", "off"
# How long the final message waits for a draft already on its way: sent after it, the draft would show again.
SETTLE_SECONDS = 2.0


Censor = Callable[[str], str]


def _as_written(text: str) -> str:
    return text


def draft_text(text: str, censor: Censor = _as_written) -> str:
    """What a draft shows of the reply so far: the one place a draft's text is prepared before it goes out.

    ``text`` is whole words that the final reply starts with; ``censor`` applies the chat's PROFANITY rule to
    it as to the final reply; a draft holds what the reply's first message will.
    """
    text = censor(text)
    return split_text(text)[0] if text else text


class Censors(Protocol):
    """What drafts need of the generator: a chat's PROFANITY mode and the rule itself."""

    def profanity_mode(self, chat_id: int) -> str:
        """How the chat takes obscene words: allow, mask or avoid."""
        ...

    def apply_profanity(self, text: str, mode: str, *, draft: bool = False) -> str:
        """What a chat of this mode may see of ``text`` (a ``draft`` also holds back an unfinished word)."""
        ...


def draft_censor(generator: Censors, chat_id: int) -> Censor:
    """The chat's PROFANITY rule for its drafts, so that no draft shows a word its final message would mask."""
    return partial(generator.apply_profanity, mode=generator.profanity_mode(chat_id), draft=True)


class Drafts:
    """Every reply's drafts: which replies get them, the ones under way (for their stop button), and the switch.

    Shared by all handlers through the dispatcher's workflow data; ``interval`` is DRAFT_INTERVAL_MS in seconds.
    """

    def __init__(self, mode: str, interval: float) -> None:
        self.enabled = mode == AUTO
        self.interval = interval
        self._under_way: dict[tuple[int, int], ReplyDrafts] = {}

    @asynccontextmanager
    async def show(
        self, bot: Bot, message: Message, censor: Censor = _as_written
    ) -> AsyncIterator[ReplyProgress | None]:
        """While open, the reply to ``message`` shows as drafts (``censor`` applied): yields its progress.

        None where there are no drafts: STREAMING=off, a group, or an answer after a restart (its stop button
        could not be heard before polling starts). On the way out, drafts end before the final message goes.
        """
        if not self.enabled or not is_private(message) or RECOVERING.get():
            yield None
            return
        thread = message.message_thread_id if message.is_topic_message else None
        drafts = ReplyDrafts(self, bot, message.chat.id, random.randint(1, 2**31 - 1), thread, censor)
        key = (message.chat.id, drafts.draft_id)
        self._under_way[key] = drafts
        try:
            yield drafts.progress
        finally:
            del self._under_way[key]
            await drafts.close()

    def stop(self, chat_id: int, draft_id: int) -> bool:
        """The user pressed a draft's stop button: its reply stops now; False if it is done already."""
        drafts = self._under_way.get((chat_id, draft_id))
        if drafts is None:
            return False
        drafts.stop()
        return True

    def refused(self, error: TelegramAPIError) -> None:
        """The Bot API refused the method itself: no more drafts in this process."""
        if self.enabled:
            self.enabled = False
            logger.warning("the Bot API refused sendMessageDraft (%s); no more drafts until a restart", error)


class ReplyDrafts:
    """One reply's drafts in one private chat, sent by one task, the latest text first, never more than one at once."""

    def __init__(
        self, drafts: Drafts, bot: Bot, chat_id: int, draft_id: int, thread_id: int | None, censor: Censor
    ) -> None:
        self.draft_id = draft_id
        self.progress = ReplyProgress(self._show, drafts.interval)
        self._drafts = drafts
        self._bot = bot
        self._chat_id = chat_id
        self._thread_id = thread_id
        self._censor = censor
        self._latest = self._sent = ""
        self._quiet_until = 0.0
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def _show(self, text: str) -> None:
        """The progress's new text (on the event loop): send it as soon as the draft before it is through."""
        if self._closed:
            return
        self._latest = text
        if self._task is None:
            self._task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while not self._closed and self._drafts.enabled and self._latest != self._sent:
            if time.monotonic() < self._quiet_until:
                break  # Telegram asked for a pause; the next text after it goes
            self._sent = self._latest
            try:
                await self._bot.send_message_draft(
                    chat_id=self._chat_id,
                    draft_id=self.draft_id,
                    message_thread_id=self._thread_id,
                    text=draft_text(self._sent, self._censor),
                    can_stop=True,
                    # The draft stays until the final message replaces it, stopped or not.
                    keep_on_stop=True,
                )
            except TelegramRetryAfter as error:
                self._quiet_until = time.monotonic() + error.retry_after
            except (TelegramServerError, TelegramNetworkError) as error:
                logger.info("a draft in chat %s was skipped: %s", self._chat_id, error)
            except TelegramForbiddenError:
                self._closed = True  # the user blocked the bot; the final message's send says so
            except TelegramAPIError as error:
                self._drafts.refused(error)
            except Exception:
                logger.exception("a draft in chat %s failed; this reply goes on without drafts", self._chat_id)
                self._closed = True
        self._task = None

    def stop(self) -> None:
        """The stop button: no more drafts, and the reply's generation ends at its next token."""
        self._closed = True
        self.progress.stop()

    async def close(self) -> None:
        """No more drafts; one on its way gets up to SETTLE_SECONDS, so that it can't land after the final message."""
        self._closed = True
        task = self._task
        if task is not None:
            await asyncio.wait((task,), timeout=SETTLE_SECONDS)
            task.cancel()


async def stop_reply(event: MessageGenerationStopped, drafts: Drafts) -> None:
    """The stop button under a draft: that reply's text so far becomes its final message."""
    if drafts.stop(event.chat.id, event.draft_id):
        logger.info("chat %s stopped a reply while it was written", event.chat.id)


def create_drafts_router() -> Router:
    """The handler of the drafts' stop button (a ``stopped_message_generation`` update)."""
    router = Router(name="drafts")
    router.stopped_message_generation.register(stop_reply)
    return router
