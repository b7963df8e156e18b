"""A crash loses no message: every update is written to SQLite before it is handled and marked done after.

Telegram counts an update delivered once the next getUpdates starts (or once a webhook post is
acknowledged), before its answer exists. So the inbox keeps each message and button press until its
handling ends (an answer, or a definite refusal such as "busy", was sent); at the next start whatever
is left is handled again, in each chat's order, as a reply to the original message. Done updates keep
their id (not their text) for a day, so one that Telegram delivers twice is answered once.

Update ids are numbered per bot, so the inbox keys each update on the bot's id (the numeric part of its
token) too: a BOT_TOKEN changed to another bot on the same database neither answers the old bot's
leftovers nor takes the new bot's updates for ones handled already. The old bot's leftovers wait for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sqlite3
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.types import Message, ReplyParameters, TelegramObject, Update

import texts
from bot.access import expects_answer
from bot.middlewares import chat_of

logger = logging.getLogger(__name__)

# Set while a recovered update is handled, so its answer replies to the original message.
RECOVERING: contextvars.ContextVar[bool] = contextvars.ContextVar("recovering", default=False)

# How long a handled update's id is kept to recognise a second delivery.
DONE_KEPT_SECONDS = 86400.0
# Start-ups at which an update may be handled again before it is given up (a poison update can't loop forever).
MAX_ATTEMPTS = 3

# The bot of rows written before the inbox named bots: the first bot that starts takes them as its own.
UNNAMED_BOT = 0

_TABLE = """
CREATE TABLE IF NOT EXISTS inbox (
    bot_id INTEGER NOT NULL,
    update_id INTEGER NOT NULL,
    chat_id INTEGER,
    payload TEXT,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at REAL,
    PRIMARY KEY (bot_id, update_id)
);
"""
_INDEX = "CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (bot_id, done_at, update_id);"
# An inbox of a bot before this version, keyed on update_id alone, moved into the new table in one transaction.
_ADD_BOT_IDS = f"""
BEGIN;
ALTER TABLE inbox RENAME TO inbox_without_bot_ids;
{_TABLE}
INSERT INTO inbox (bot_id, update_id, chat_id, payload, received_at, attempts, done_at)
    SELECT {UNNAMED_BOT}, update_id, chat_id, payload, received_at, attempts, done_at FROM inbox_without_bot_ids;
DROP TABLE inbox_without_bot_ids;
COMMIT;
"""


@dataclass(frozen=True)
class PendingUpdate:
    """An update that was received but whose handling never ended."""

    update_id: int
    chat_id: int | None
    payload: dict[str, Any]
    attempts: int


def kept(update: Update) -> bool:
    """Whether the inbox keeps this update until it is answered: messages and button presses (not a draft's stop)."""
    return update.message is not None or update.callback_query is not None


def _message_in(payload: dict[str, Any]) -> dict[str, Any]:
    """The message of a raw update, or the message under its pressed button ({} if neither)."""
    return payload.get("message") or (payload.get("callback_query") or {}).get("message") or {}


def sent_at(payload: dict[str, Any]) -> float | None:
    """When the user sent the message (or the message under a pressed button was sent), from Telegram's date."""
    date = _message_in(payload).get("date")
    return float(date) if isinstance(date, int | float) else None


class Inbox:
    """The ``inbox`` table: each bot's updates received and not yet done, and the ids of its recently done ones."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(inbox)")}
        if columns and "bot_id" not in columns:
            try:
                self._db.executescript(_ADD_BOT_IDS)
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.rollback()
                raise
        self._db.executescript(_TABLE + _INDEX)

    def receive(self, bot_id: int, update: Update) -> bool:
        """Record a bot's update before it is handled; False if it was received before (a second delivery)."""
        payload = update.model_dump_json(exclude_none=True)
        with self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO inbox (bot_id, update_id, chat_id, payload, received_at) VALUES (?, ?, ?, ?, ?)",
                (bot_id, update.update_id, chat_of(update.event), payload, time.time()),
            )
        return cursor.rowcount == 1

    def done(self, bot_id: int, update_id: int) -> None:
        """Mark an update handled: its text goes, its id stays a while to recognise a second delivery."""
        with self._db:
            self._db.execute(
                "UPDATE inbox SET payload = NULL, done_at = ? WHERE bot_id = ? AND update_id = ?",
                (time.time(), bot_id, update_id),
            )

    def pending(self, bot_id: int) -> list[PendingUpdate]:
        """The bot's updates whose handling never ended, oldest first; each call counts one more attempt.

        Called once per start (by ``recover``): rows written before the inbox named bots become this bot's.
        """
        with self._db:
            self._db.execute("UPDATE OR IGNORE inbox SET bot_id = ? WHERE bot_id = ?", (bot_id, UNNAMED_BOT))
            self._db.execute("UPDATE inbox SET attempts = attempts + 1 WHERE bot_id = ? AND done_at IS NULL", (bot_id,))
            rows = self._db.execute(
                "SELECT update_id, chat_id, payload, attempts FROM inbox WHERE bot_id = ? AND done_at IS NULL "
                "ORDER BY update_id",
                (bot_id,),
            ).fetchall()
        return [
            PendingUpdate(update_id, chat_id, json.loads(payload), attempts)
            for update_id, chat_id, payload, attempts in rows
        ]

    def prune(self, now: float | None = None) -> int:
        """Forget the ids of updates done more than a day ago; returns how many went."""
        cutoff = (now or time.time()) - DONE_KEPT_SECONDS
        with self._db:
            return self._db.execute("DELETE FROM inbox WHERE done_at < ?", (cutoff,)).rowcount

    def forget_chat(self, chat_id: int) -> None:
        """Delete what the inbox holds of a chat, for every bot (used by /forget)."""
        with self._db:
            self._db.execute("DELETE FROM inbox WHERE chat_id = ? AND done_at IS NOT NULL", (chat_id,))


Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class KeepUntilAnswered(BaseMiddleware):
    """Outer update middleware: record each message and button press first, mark it done when handled.

    An update whose handling raised (its answer, apology included, could not be sent) or was cut
    off (a crash, a stop past SHUTDOWN_TIMEOUT) stays in the inbox for the next start.
    """

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Skip a second delivery; otherwise handle the update and mark it done if that ended normally."""
        if not isinstance(event, Update) or not kept(event):
            return await handler(event, data)
        # Recovered updates and webhook posts (bot.webhook) are in the inbox already.
        already_kept = RECOVERING.get() or data.get("received", False)
        bot_id = data["bot"].id
        if not already_kept and not self._inbox.receive(bot_id, event):
            logger.info("update %s was delivered again; it is answered once", event.update_id)
            return None
        result = await handler(event, data)
        self._inbox.done(bot_id, event.update_id)
        return result


async def recover(
    inbox: Inbox,
    dispatcher: Dispatcher,
    bot: Bot,
    *,
    max_age: float,
    concurrency: int,
) -> int:
    """Handle the updates a crash or a hurried stop left, each chat's in order; returns how many were taken up.

    A message older than ``max_age`` seconds (0: no limit) gets a note (``note_missed``) instead of a generated
    answer, if its sender waited for one (a group's talk the bot only overhears is let go); an update tried at
    MAX_ATTEMPTS start-ups already is given up.
    """
    by_chat: dict[int | None, list[PendingUpdate]] = defaultdict(list)
    for pending in inbox.pending(bot.id):
        by_chat[pending.chat_id].append(pending)
    slots = asyncio.Semaphore(concurrency)
    now = time.time()

    async def handle(pending: PendingUpdate) -> None:
        if pending.attempts > MAX_ATTEMPTS:
            logger.warning("update %s failed at %d start-ups; giving it up", pending.update_id, MAX_ATTEMPTS)
        else:
            date = sent_at(pending.payload)
            if max_age and date is not None and now - date > max_age:
                if await _waits_for_answer(bot, pending.payload, dispatcher["settings"].trigger_word):
                    await note_missed(bot, pending.payload)
            else:
                await dispatcher.feed_raw_update(bot, pending.payload)
        inbox.done(bot.id, pending.update_id)

    async def handle_chat(updates: list[PendingUpdate]) -> None:
        async with slots:
            for pending in updates:
                try:
                    await handle(pending)
                except Exception:
                    logger.exception("recovered update %s failed; it stays for the next start", pending.update_id)

    async def recovering() -> None:
        RECOVERING.set(True)
        await asyncio.gather(*(handle_chat(updates) for updates in by_chat.values()))

    # A task of its own, so the flag stays inside it.
    await asyncio.create_task(recovering())
    count = sum(map(len, by_chat.values()))
    if count:
        logger.info("answered %d messages left unanswered at the last stop", count)
    return count


async def _waits_for_answer(bot: Bot, payload: dict[str, Any], trigger_word: str) -> bool:
    """Whether the sender of a raw update waits for an answer: a button press does, a message may not."""
    if "message" not in payload:
        return True
    return await expects_answer(Message.model_validate(payload["message"], context={"bot": bot}), bot, trigger_word)


async def note_missed(bot: Bot, payload: dict[str, Any]) -> None:
    """Tell the sender of a message that waited too long that the bot was away, instead of answering it late."""
    message = _message_in(payload)
    chat_id = (message.get("chat") or {}).get("id")
    if chat_id is None:
        return
    reply = ReplyParameters(message_id=message["message_id"], allow_sending_without_reply=True)
    await bot.send_message(chat_id, texts.MISSED_WHILE_AWAY, reply_parameters=reply)
