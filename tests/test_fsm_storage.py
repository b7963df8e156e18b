"""FSM state in SQLite: a question the bot asked outlives a restart, and /forget deletes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.storage.base import StorageKey
from harness import Harness, RecordingBackend

import texts
from bot.commands import ForgetChoice
from bot.fsm_storage import SQLiteStorage
from bot.modes import HolidayForm, ToastChoice
from inference.modes import TOAST, request_turn
from inference.transformers_backend import TransformersBackend

GROUP = -100500


@pytest.fixture
def storage(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "fsm.sqlite3")
    try:
        yield SQLiteStorage(db)
    finally:
        db.close()


def rows(storage: SQLiteStorage) -> int:
    return storage._db.execute("SELECT COUNT(*) FROM fsm_state").fetchone()[0]


async def test_states_and_data_are_kept_per_key_and_a_cleared_key_leaves_no_row(storage: SQLiteStorage) -> None:
    key = StorageKey(bot_id=1, chat_id=-5, user_id=7)
    in_a_topic = StorageKey(bot_id=1, chat_id=-5, user_id=7, thread_id=3)
    other_bot = StorageKey(bot_id=2, chat_id=-5, user_id=7)
    await storage.set_state(key, HolidayForm.name)
    await storage.update_data(key, {"праздник": "День космонавтики", "n": [1, 2]})
    await storage.set_state(in_a_topic, "other:state")
    assert await storage.get_state(key) == HolidayForm.name.state
    assert await storage.get_data(key) == {"праздник": "День космонавтики", "n": [1, 2]}
    assert await storage.get_value(key, "n") == [1, 2]
    assert await storage.get_state(in_a_topic) == "other:state" and await storage.get_data(in_a_topic) == {}
    assert await storage.get_state(other_bot) is None and await storage.get_data(other_bot) == {}
    with pytest.raises(DataNotDictLikeError):
        await storage.set_data(key, [("a", 1)])  # type: ignore[arg-type]

    await storage.set_state(key, None)
    assert await storage.get_data(key) == {"праздник": "День космонавтики", "n": [1, 2]}, "the data stays"
    await storage.set_data(key, {})
    await storage.set_state(in_a_topic, None)
    assert rows(storage) == 0


@pytest.fixture
def recorder(tiny_backend: TransformersBackend) -> RecordingBackend:
    return RecordingBackend(tiny_backend)


async def test_a_question_asked_before_a_restart_is_still_asked_after_it(
    recorder: RecordingBackend, tmp_path: Path
) -> None:
    # Two dispatchers on one database file, one after the other: the bot before and after a redeploy.
    before = Harness(recorder, tmp_path)
    try:
        await before.press(1, ToastChoice(holiday="other").pack())
        assert before.session.texts(1) == [texts.ASK_HOLIDAY]
    finally:
        before.close()
    after = Harness(recorder, tmp_path)
    try:
        [toast] = await after.send(1, "День космонавтики")
        assert toast.startswith(texts.TOAST_TITLE.format(topic="День космонавтики"))
        assert recorder.requests[-1].turns == (request_turn(TOAST, "День космонавтики"),)
        # Answered, the question is gone: the next message is chat, after another restart too.
        after.close()
        after = Harness(recorder, tmp_path)
        await after.send(1, "привет")
        assert recorder.requests[-1].turns == ("привет",)
    finally:
        after.close()


async def test_forget_deletes_the_questions_asked_in_the_chat(recorder: RecordingBackend, make_harness) -> None:
    harness: Harness = make_harness(recorder)
    harness.session.group_admins = {99}
    await harness.press(GROUP, ToastChoice(holiday="other").pack(), user_id=11, chat_type="supergroup")
    await harness.press(1, ToastChoice(holiday="other").pack())
    storage = harness.dispatcher.storage
    asked_in_group = StorageKey(bot_id=harness.bot.id, chat_id=GROUP, user_id=11)
    asked_in_private = StorageKey(bot_id=harness.bot.id, chat_id=1, user_id=1)
    assert await storage.get_state(asked_in_group) == HolidayForm.name.state

    assert await harness.send(GROUP, "/forget", user_id=99, chat_type="supergroup") == [texts.FORGET_QUESTION]
    await harness.press(GROUP, ForgetChoice(confirmed=True).pack(), user_id=99, chat_type="supergroup")
    assert harness.session.edits()[-1].text == texts.FORGOTTEN
    assert await storage.get_state(asked_in_group) is None, "another member's question in the group went too"
    assert await storage.get_state(asked_in_private) == HolidayForm.name.state, "other chats keep theirs"
