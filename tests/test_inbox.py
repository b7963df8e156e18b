"""The inbox: every update is kept until it is answered, answered again after a crash, and answered once."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import SendMessage
from aiogram.types import Update
from harness import Harness
from recording_session import message_update

import texts
from bot.inbox import MAX_ATTEMPTS, Inbox, recover
from inference.transformers_backend import TransformersBackend


@pytest.fixture
def harness(tiny_backend: TransformersBackend, make_harness) -> Harness:
    return make_harness(tiny_backend)


def inbox_of(harness: Harness) -> Inbox:
    return harness.dispatcher["inbox"]


async def recover_now(harness: Harness, max_age: float = 3600) -> int:
    return await recover(
        inbox_of(harness),
        harness.dispatcher,
        harness.bot,
        max_age=max_age,
        concurrency=4,
    )


def reply_target(call: SendMessage) -> int | None:
    return call.reply_parameters.message_id if call.reply_parameters else None


async def test_an_update_delivered_twice_is_answered_once(harness: Harness) -> None:
    update = message_update(1, "/help")
    await harness.dispatcher.feed_raw_update(harness.bot, update)
    await harness.dispatcher.feed_raw_update(harness.bot, update)
    assert harness.session.texts(1) == [texts.HELP]
    assert inbox_of(harness).pending(harness.bot.id) == []


async def test_an_answer_that_could_not_be_sent_stays_and_is_sent_at_the_next_start(harness: Harness) -> None:
    harness.session.fail[SendMessage] = TelegramBadRequest(
        method=SendMessage(chat_id=1, text="x"), message="Bad Request: not now"
    )
    first, second = message_update(1, "раз"), message_update(1, "/help")
    for update in (first, second):
        with pytest.raises(TelegramBadRequest):
            await harness.dispatcher.feed_raw_update(harness.bot, update)
    del harness.session.fail[SendMessage]
    harness.session.calls.clear()  # the recording keeps the refused sends too

    assert await recover_now(harness) == 2
    sent = harness.session.sent(1)
    assert [reply_target(call) for call in sent] == [first["message"]["message_id"], second["message"]["message_id"]]
    assert sent[1].text == texts.HELP and sent[0].text not in (texts.ERROR, texts.BUSY)
    assert inbox_of(harness).pending(harness.bot.id) == []
    # Telegram delivering them again after the restart changes nothing.
    for update in (first, second):
        await harness.dispatcher.feed_raw_update(harness.bot, update)
    assert len(harness.session.sent(1)) == 2


async def test_a_message_older_than_the_limit_gets_a_note_instead(harness: Harness) -> None:
    old = message_update(2, "привет")
    old["message"]["date"] = int(time.time()) - 7200
    harness.session.fail[SendMessage] = TelegramBadRequest(
        method=SendMessage(chat_id=2, text="x"), message="Bad Request: not now"
    )
    with pytest.raises(TelegramBadRequest):
        await harness.dispatcher.feed_raw_update(harness.bot, old)
    del harness.session.fail[SendMessage]
    harness.session.calls.clear()
    assert await recover_now(harness, max_age=3600) == 1
    [note] = harness.session.sent(2)
    assert note.text == texts.MISSED_WHILE_AWAY and reply_target(note) == old["message"]["message_id"]
    assert harness.store.recent_turns(2, 10) == [], "nothing was generated"


async def test_an_update_that_keeps_failing_is_given_up(harness: Harness) -> None:
    harness.session.fail[SendMessage] = TelegramBadRequest(
        method=SendMessage(chat_id=3, text="x"), message="Bad Request: not now"
    )
    with pytest.raises(TelegramBadRequest):
        await harness.dispatcher.feed_raw_update(harness.bot, message_update(3, "/help"))
    for _ in range(MAX_ATTEMPTS - 1):
        await recover_now(harness)
        assert len(inbox_of(harness).pending(harness.bot.id)) == 1
    await recover_now(harness)
    assert inbox_of(harness).pending(harness.bot.id) == []


async def test_forget_removes_the_chats_handled_ids(harness: Harness) -> None:
    await harness.send(4, "/help")
    inbox = inbox_of(harness)
    db = harness.store.connection
    assert db.execute("SELECT COUNT(*) FROM inbox WHERE chat_id = 4").fetchone()[0] == 1
    inbox.forget_chat(4)
    assert db.execute("SELECT COUNT(*) FROM inbox WHERE chat_id = 4").fetchone()[0] == 0


def test_handled_ids_are_kept_a_day(tmp_path: Path, harness: Harness) -> None:
    inbox = inbox_of(harness)
    db = harness.store.connection
    add = "INSERT INTO inbox (bot_id, update_id, chat_id, payload, received_at, done_at) VALUES (42, ?, 1, ?, 0, ?)"
    db.execute(add, (1, None, time.time()))
    db.execute(add, (2, None, 0))
    db.execute(add, (3, "{}", None))
    assert inbox.prune() == 1
    assert [row[0] for row in db.execute("SELECT update_id FROM inbox ORDER BY update_id")] == [1, 3]


async def test_after_a_long_stop_only_messages_that_wait_for_an_answer_get_the_note(harness: Harness) -> None:
    """A group's talk the bot only overhears (REPLY_CHANCE) is let go, not apologised for."""
    group = {"user_id": 11, "chat_type": "supergroup"}
    talk, asked = message_update(-100, "просто болтаем", **group), message_update(-100, "@test_bot привет", **group)
    for update in (talk, asked):
        update["message"]["date"] = int(time.time()) - 7200
        kept = inbox_of(harness).receive(harness.bot.id, Update.model_validate(update))
        assert kept, "received, then the bot was killed"
    assert await recover_now(harness, max_age=3600) == 2
    [note] = harness.session.sent(-100)
    assert note.text == texts.MISSED_WHILE_AWAY and reply_target(note) == asked["message"]["message_id"]
    assert inbox_of(harness).pending(harness.bot.id) == []


# --- one database, several bots ------------------------------------------------------------------------------

OTHER_TOKEN = "43:OTHER"


def failing_sends(harness: Harness) -> None:
    harness.session.fail[SendMessage] = TelegramBadRequest(
        method=SendMessage(chat_id=1, text="x"), message="Bad Request: not now"
    )


async def test_another_bot_on_the_same_database_neither_answers_the_first_ones_leftovers_nor_skips_its_ids(
    tiny_backend: TransformersBackend, tmp_path: Path
) -> None:
    # Update ids are numbered per bot: both bots get an update 700 and 701.
    handled, left = message_update(1, "/help"), message_update(1, "/start")
    handled["update_id"], left["update_id"] = 700, 701
    first = Harness(tiny_backend, tmp_path)
    try:
        await first.dispatcher.feed_raw_update(first.bot, handled)
        failing_sends(first)
        with pytest.raises(TelegramBadRequest):
            await first.dispatcher.feed_raw_update(first.bot, left)  # its answer is left for the next start
    finally:
        first.close()

    other = Harness(tiny_backend, tmp_path, bot_token=OTHER_TOKEN)  # BOT_TOKEN changed, DB_PATH kept
    try:
        assert await recover_now(other) == 0, "the first bot's leftover is not the other bot's to answer"
        assert other.session.sent() == []
        for update_id, text in ((700, "/help"), (701, "/help")):
            update = message_update(2, text)
            update["update_id"] = update_id
            await other.dispatcher.feed_raw_update(other.bot, update)
        assert other.session.texts(2) == [texts.HELP, texts.HELP], "its own updates are new, whatever their ids"
    finally:
        other.close()

    back = Harness(tiny_backend, tmp_path)  # BOT_TOKEN back to the first bot
    try:
        assert await recover_now(back) == 1
        [answer] = back.session.sent(1)
        assert answer.text == texts.GREETING and reply_target(answer) == left["message"]["message_id"]
        await back.dispatcher.feed_raw_update(back.bot, handled)
        assert len(back.session.sent(1)) == 1, "its own handled update delivered again is still answered once"
    finally:
        back.close()


OLD_INBOX = """
CREATE TABLE inbox (
    update_id INTEGER PRIMARY KEY,
    chat_id INTEGER,
    payload TEXT,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at REAL
);
CREATE INDEX inbox_pending ON inbox (done_at, update_id);
"""


async def test_an_inbox_from_before_bot_ids_becomes_the_first_bots_to_start(
    tiny_backend: TransformersBackend, tmp_path: Path
) -> None:
    handled, left = message_update(1, "/help"), message_update(1, "/start")
    db = sqlite3.connect(tmp_path / "bot.sqlite3")
    db.executescript(OLD_INBOX)
    with db:
        db.execute("INSERT INTO inbox VALUES (?, 1, NULL, ?, 1, ?)", (handled["update_id"], time.time(), time.time()))
        db.execute("INSERT INTO inbox VALUES (?, 1, ?, ?, 1, NULL)", (left["update_id"], json.dumps(left), time.time()))
    db.close()

    harness = Harness(tiny_backend, tmp_path)
    try:
        assert await recover_now(harness) == 1
        [answer] = harness.session.sent(1)
        assert answer.text == texts.GREETING and reply_target(answer) == left["message"]["message_id"]
        for update in (handled, left):  # Telegram delivering them again
            await harness.dispatcher.feed_raw_update(harness.bot, update)
        assert len(harness.session.sent(1)) == 1
        rows = harness.store.connection.execute("SELECT bot_id, attempts FROM inbox ORDER BY update_id").fetchall()
        assert rows == [(harness.bot.id, 1), (harness.bot.id, 2)]
    finally:
        harness.close()
