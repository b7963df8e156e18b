"""The inbox: every update is kept until it is answered, answered again after a crash, and answered once."""

from __future__ import annotations

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
    assert inbox_of(harness).pending() == []


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
    assert inbox_of(harness).pending() == []
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
        assert len(inbox_of(harness).pending()) == 1
    await recover_now(harness)
    assert inbox_of(harness).pending() == []


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
    db.execute("INSERT INTO inbox (update_id, chat_id, received_at, done_at) VALUES (1, 1, 0, ?)", (time.time(),))
    db.execute("INSERT INTO inbox (update_id, chat_id, received_at, done_at) VALUES (2, 1, 0, 0)")
    db.execute("INSERT INTO inbox (update_id, chat_id, payload, received_at) VALUES (3, 1, '{}', 0)")
    assert inbox.prune() == 1
    assert [row[0] for row in db.execute("SELECT update_id FROM inbox ORDER BY update_id")] == [1, 3]


async def test_after_a_long_stop_only_messages_that_wait_for_an_answer_get_the_note(harness: Harness) -> None:
    """A group's talk the bot only overhears (REPLY_CHANCE) is let go, not apologised for."""
    group = {"user_id": 11, "chat_type": "supergroup"}
    talk, asked = message_update(-100, "просто болтаем", **group), message_update(-100, "@test_bot привет", **group)
    for update in (talk, asked):
        update["message"]["date"] = int(time.time()) - 7200
        assert inbox_of(harness).receive(Update.model_validate(update)), "received, then the bot was killed"
    assert await recover_now(harness, max_age=3600) == 2
    [note] = harness.session.sent(-100)
    assert note.text == texts.MISSED_WHILE_AWAY and reply_target(note) == asked["message"]["message_id"]
    assert inbox_of(harness).pending() == []
