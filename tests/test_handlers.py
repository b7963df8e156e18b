"""Handlers through aiogram's real Dispatcher, with a recording session and the tiny real model."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiogram.exceptions import TelegramForbiddenError, TelegramServerError
from aiogram.methods import SendChatAction, SendMessage
from harness import ADMIN, Harness
from recording_backend import RecordingBackend
from recording_session import STICKER
from waiting import PATIENCE, until

import texts
from bot.middlewares import ChatOrder
from bot.notify import AdminNotifier
from bot.replies import split_text
from inference.transformers_backend import TransformersBackend
from store import Turn


@pytest.fixture(scope="module")
def model(answering_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(answering_model_dir), device="cpu")


@pytest.fixture
def harness(model: TransformersBackend, make_harness) -> Harness:
    return make_harness(RecordingBackend(model))


async def test_start_greets_and_clears_history(harness: Harness) -> None:
    harness.store.add_turns(1, [Turn("1", "старое"), Turn("bot", "старое")])
    assert await harness.send(1, "/start") == [texts.GREETING]
    assert harness.store.recent_turns(1, 10) == []


async def test_help_lists_the_commands(harness: Harness) -> None:
    [answer] = await harness.send(1, "/help")
    assert answer == texts.HELP and "/reset" in answer


@pytest.mark.parametrize("command", ["/reset", "/delete_history"])
async def test_reset_clears_history(harness: Harness, command: str) -> None:
    harness.store.add_turns(1, [Turn("1", "старое")])
    assert await harness.send(1, command) == [texts.HISTORY_CLEARED]
    assert harness.store.recent_turns(1, 10) == []


async def test_free_text_gets_a_plain_reply_while_typing(harness: Harness) -> None:
    [reply] = await harness.send(5, "привет, как дела?")
    assert reply
    actions = [c for c in harness.session.calls if isinstance(c, SendChatAction)]
    assert actions and actions[0].chat_id == 5 and actions[0].action == "typing"
    [sent] = harness.session.sent(5)
    [params] = [wire for call, wire in zip(harness.session.calls, harness.session.wire, strict=True) if call is sent]
    assert "parse_mode" not in params, "model output must not be parsed as markup"
    assert reply != texts.FALLBACK_REPLY
    assert harness.store.recent_turns(5, 10) == [Turn("5", "привет, как дела?"), Turn("bot", reply)]


async def test_a_model_with_nothing_to_say_gets_the_fallback_phrase_and_nothing_is_stored(
    silent_model_dir: Path, make_harness
) -> None:
    harness = make_harness(TransformersBackend(str(silent_model_dir), device="cpu"))
    assert await harness.send(5, "привет") == [texts.FALLBACK_REPLY]
    assert harness.store.recent_turns(5, 10) == []


@pytest.mark.parametrize(
    "extra",
    [
        {"sticker": STICKER},
        {"photo": [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]},
        {"voice": {"file_id": "v", "file_unique_id": "v", "duration": 1}},
    ],
    ids=["sticker", "photo", "voice"],
)
async def test_non_text_messages_get_a_polite_answer(harness: Harness, extra: dict) -> None:
    assert await harness.send(3, None, **extra) == [texts.NOT_TEXT]


async def test_only_special_tokens_get_an_explanation(harness: Harness) -> None:
    assert await harness.send(3, "@@ПЕРВЫЙ@@ <|endoftext|> \u200b") == [texts.EMPTY_TEXT]
    assert harness.store.recent_turns(3, 10) == []


async def test_unknown_commands_point_to_help_and_other_bots_commands_are_ignored(harness: Harness) -> None:
    assert await harness.send(3, "/weather") == [texts.UNKNOWN_COMMAND]
    assert await harness.send(3, "/start@other_bot") == []
    assert await harness.send(3, "/start@test_bot") == [texts.GREETING]


async def test_a_failure_apologises_and_alerts_the_admin_once(harness: Harness) -> None:
    harness.model.fail = RuntimeError("CUDA out of memory")
    assert await harness.send(8, "привет") == [texts.ERROR]
    assert await harness.send(9, "привет") == [texts.ERROR]
    alerts = harness.session.texts(ADMIN)
    assert len(alerts) == 1 and "CUDA out of memory" in alerts[0]


async def test_a_blocked_user_is_logged_not_retried(harness: Harness, caplog) -> None:
    # The retry middleware is in play: a server error is retried and the message delivered...
    harness.session.fail_next[SendMessage] = [
        TelegramServerError(method=SendMessage(chat_id=3, text="x"), message="Bad Gateway")
    ]
    await harness.send(3, "/help")
    assert len(harness.session.sent(3)) == 2
    # ...but a user who blocked the bot gets one attempt, logged.
    harness.session.fail[SendMessage] = TelegramForbiddenError(
        method=SendMessage(chat_id=4, text="x"), message="Forbidden: bot was blocked by the user"
    )
    with caplog.at_level(logging.INFO):
        await harness.send(4, "/help")
    assert len(harness.session.sent(4)) == 1
    assert "blocked" in caplog.text


async def test_a_full_queue_answers_busy_at_once(model: TransformersBackend, make_harness) -> None:
    recorder = RecordingBackend(model)
    harness = make_harness(recorder, max_pending=1)
    recorder.gate.clear()  # the first message's generation can't end before the test lets it
    try:
        slow = asyncio.ensure_future(harness.send(1, "первый"))
        await until(lambda: harness.generator.pending == 1, "the first message is in the pool")
        # Answered while the first reply is still held: "at once", not after the pool freed up.
        assert await asyncio.wait_for(harness.send(2, "второй"), PATIENCE) == [texts.BUSY]
        assert not slow.done()
    finally:
        recorder.gate.set()
    assert (await slow)[0] not in (texts.BUSY, texts.FALLBACK_REPLY)


def test_long_replies_are_split_for_telegram() -> None:
    text = ("слово " * 1500).strip()
    parts = split_text(text)
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts) == text
    assert split_text("x" * 5000) == ["x" * 4096, "x" * 904]
    assert split_text("коротко") == ["коротко"]


async def test_one_chats_messages_are_answered_in_order_and_a_flood_is_asked_to_wait(model, make_harness) -> None:
    harness = make_harness(RecordingBackend(model), chat_queue_limit=2, batch_window_ms=50)
    await asyncio.gather(*(harness.send(1, f"сообщение {i}") for i in range(4)))
    answers = harness.session.texts(1)
    assert answers.count(texts.SLOW_DOWN) == 2
    replies = [t.text for t in harness.store.recent_turns(1, 10) if t.author == "bot"]
    assert [answer for answer in answers if answer != texts.SLOW_DOWN] == replies and len(replies) == 2
    stored_user_turns = [t.text for t in harness.store.recent_turns(1, 10) if t.author == "1"]
    assert stored_user_turns == ["сообщение 0", "сообщение 1"]


async def test_a_burst_of_errors_sends_one_alert_then_one_count(harness: Harness, monkeypatch) -> None:
    # The notifier's clock stands still, so every alert falls within the interval however slow the machine;
    # the count is still sent by its own timer, 0.3 s of real time after the first alert.
    monkeypatch.setattr("bot.notify.time", SimpleNamespace(monotonic=lambda: 1000.0))
    admins = AdminNotifier(harness.bot, [ADMIN], alert_interval=0.3)
    for number in range(4):
        await admins.alert(f"ошибка {number}")
    assert harness.session.texts(ADMIN) == [texts.ADMIN_ALERT.format(error="ошибка 0")]
    await until(lambda: len(harness.session.texts(ADMIN)) > 1, "the count of the rest")
    assert harness.session.texts(ADMIN)[1:] == [texts.ADMIN_ALERT_MORE.format(count=3, seconds=0)]
    await admins.alert("ошибка 4")
    await admins.close()
    assert harness.session.texts(ADMIN)[2:] == [texts.ADMIN_ALERT_MORE.format(count=1, seconds=0)]


async def test_an_unreachable_admin_chat_is_logged_not_fatal(harness: Harness, caplog) -> None:
    harness.session.fail[SendMessage] = TelegramForbiddenError(
        method=SendMessage(chat_id=ADMIN, text="x"), message="Forbidden: bot was blocked by the user"
    )
    await AdminNotifier(harness.bot, [ADMIN, 888]).send("Бот запущен")
    assert "admin chat 777 not reached" in caplog.text and "admin chat 888 not reached" in caplog.text


class HoldBeforeFilters:
    """Dispatcher-level middleware that holds the messages with the given texts before any filter sees them.

    Like a filter's worker thread that happens to be slow: the held message arrived first but reaches the
    handlers last.
    """

    def __init__(self, *texts_to_hold: str) -> None:
        self.held = {text: asyncio.Event() for text in texts_to_hold}
        self.release = {text: asyncio.Event() for text in texts_to_hold}

    async def __call__(self, handler, event, data):
        if event.text in self.held:
            self.held[event.text].set()
            await self.release[event.text].wait()
        return await handler(event, data)


def chat_order(harness: Harness) -> ChatOrder:
    return next(m for r in harness.dispatcher.chain_tail for m in r.message.middleware if isinstance(m, ChatOrder))


async def test_a_message_that_reaches_the_handlers_late_is_still_answered_in_arrival_order(model, make_harness) -> None:
    harness = make_harness(RecordingBackend(model))
    hold = HoldBeforeFilters("первое")
    harness.dispatcher.message.outer_middleware(hold)
    first = asyncio.ensure_future(harness.send(1, "первое"))
    await asyncio.wait_for(hold.held["первое"].wait(), PATIENCE)
    second = asyncio.ensure_future(harness.send(1, "второе"))
    await until(lambda: chat_order(harness).waiting(1) == 1, "the second message is at the chat's order")
    hold.release["первое"].set()
    await asyncio.gather(first, second)
    turns = harness.store.recent_turns(1, 10)
    assert [(t.author, t.text) for t in turns if t.author == "1"] == [("1", "первое"), ("1", "второе")]
    assert [t.author for t in turns] == ["1", "bot", "1", "bot"]
    assert harness.session.texts(1) == [t.text for t in turns if t.author == "bot"]


async def test_a_flood_refuses_the_messages_that_came_last_whatever_order_they_reach_the_handlers(
    model, make_harness
) -> None:
    recorder = RecordingBackend(model)
    harness = make_harness(recorder, chat_queue_limit=2)
    hold = HoldBeforeFilters("сообщение 1")
    harness.dispatcher.message.outer_middleware(hold)
    recorder.gate.clear()  # the first answer is being generated while the others come
    try:
        sends = [asyncio.ensure_future(harness.send(1, "сообщение 0"))]
        await until(lambda: harness.generator.pending == 1, "the first message is in the pool")
        sends.append(asyncio.ensure_future(harness.send(1, "сообщение 1")))
        await asyncio.wait_for(hold.held["сообщение 1"].wait(), PATIENCE)
        sends.append(asyncio.ensure_future(harness.send(1, "сообщение 2")))
        await until(lambda: chat_order(harness).waiting(1) == 2, "the third message is at the chat's order")
        hold.release["сообщение 1"].set()
        # Two asked messages are ahead of the third one (the limit), one of the second: the third is refused.
        assert await asyncio.wait_for(sends[2], PATIENCE) == [texts.SLOW_DOWN]
    finally:
        recorder.gate.set()
    await asyncio.gather(*sends)
    stored = [t.text for t in harness.store.recent_turns(1, 10) if t.author == "1"]
    assert stored == ["сообщение 0", "сообщение 1"]
