"""The bot joining a group's talk (REPLY_CHANCE): what it answers unasked, what it keeps, and the group's setting."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import pytest
from aiogram.methods import AnswerCallbackQuery
from harness import ADMIN, Harness
from recording_backend import RecordingBackend
from recording_session import STICKER, message_update
from waiting import until

import texts
from bot.commands import REPLY_CHANCES, SettingsChange
from bot.middlewares import ChatOrder
from inference.transformers_backend import TransformersBackend
from store import BOT_AUTHOR, ChatPreferences, Turn

GROUP = -100555
IN_GROUP = {"chat_type": "supergroup"}


class Dice(random.Random):
    """Dice that always roll ``value``, and count their rolls."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value, self.rolls = value, 0

    def random(self) -> float:
        self.rolls += 1
        return self.value


@pytest.fixture(scope="module")
def model(answering_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(answering_model_dir), device="cpu")


@pytest.fixture
def recorder(model: TransformersBackend) -> RecordingBackend:
    return RecordingBackend(model)


async def say(harness: Harness, text: str | None, user: int = 11, **extra: object) -> int:
    """A group member writes; returns the message's id once the bot has handled it."""
    update = message_update(GROUP, text, user_id=user, **IN_GROUP, **extra)
    await harness.dispatcher.feed_raw_update(harness.bot, update)
    return update["message"]["message_id"]


def history(harness: Harness) -> list[Turn]:
    return harness.store.recent_turns(GROUP, 10_000)


def chat_order(harness: Harness) -> ChatOrder:
    return next(m for r in harness.dispatcher.chain_tail for m in r.message.middleware if isinstance(m, ChatOrder))


async def test_with_reply_chance_1_every_unaddressed_text_is_answered_as_a_reply(
    recorder: RecordingBackend, make_harness
) -> None:
    harness = make_harness(recorder, reply_chance=1.0)
    lines = [(11, "всем привет"), (22, "привет"), (22, "что нового?"), (11, "ничего")]
    ids = [await say(harness, text, user) for user, text in lines]
    sent = harness.session.sent(GROUP)
    assert [call.reply_parameters.message_id for call in sent] == ids, "each answer replies to its message"
    answers = [call.text for call in sent]
    assert texts.FALLBACK_REPLY not in answers
    expected = []
    for (user, text), answer in zip(lines, answers, strict=True):
        expected += [Turn(str(user), text), Turn(BOT_AUTHOR, answer)]
    assert history(harness) == expected
    # The second answer's prompt held what was said before it, as turns of their authors.
    assert recorder.requests[1].turns == ("всем привет", answers[0], "привет")
    assert harness.dispatcher["stats"].unprompted == 4


async def test_with_reply_chance_0_nothing_unaddressed_is_answered_or_kept(
    recorder: RecordingBackend, make_harness
) -> None:
    dice = Dice(0.0)  # would choose every message, were it asked
    harness = make_harness(recorder, dice=dice)
    for user, text in [(11, "всем привет"), (22, "Тимохин кот"), (22, "что нового?")]:
        await say(harness, text, user)
    assert harness.session.sent(GROUP) == [] and history(harness) == [] and recorder.requests == []
    assert dice.rolls == 0
    assert harness.dispatcher["inbox"].pending(harness.bot.id) == [], "handled: nothing waits for the next start"


async def test_unchosen_messages_are_kept_and_marked_done(recorder: RecordingBackend, make_harness) -> None:
    harness = make_harness(recorder, reply_chance=0.1, dice=Dice(0.5))
    await say(harness, "всем привет", 11)
    await say(harness, "привет", 22)
    assert harness.session.sent(GROUP) == [] and recorder.requests == []
    assert history(harness) == [Turn("11", "всем привет"), Turn("22", "привет")]
    assert harness.dispatcher["inbox"].pending(harness.bot.id) == []


async def test_the_prompt_of_an_addressed_message_holds_the_talk_before_it(
    recorder: RecordingBackend, make_harness
) -> None:
    harness = make_harness(recorder, reply_chance=0.25, dice=Dice(0.5))
    await say(harness, "кто идёт в кино?", 11)
    await say(harness, "я", 22)
    await say(harness, "и Аня", 22)
    await say(harness, "@test_bot а ты?", 33)
    [answer] = [call.text for call in harness.session.sent(GROUP)]
    # Three turns of context: 22's two messages are one turn, between 11's question and 33's.
    assert recorder.requests[-1].turns == ("кто идёт в кино?", "я и Аня", "а ты?")
    await say(harness, "ну ладно", 11)
    assert history(harness) == [
        Turn("11", "кто идёт в кино?"),
        Turn("22", "я"),
        Turn("22", "и Аня"),
        Turn("33", "а ты?"),
        Turn(BOT_AUTHOR, answer),
        Turn("11", "ну ладно"),
    ]


async def test_talk_during_an_answer_waits_its_turn_and_is_never_told_to_wait(
    recorder: RecordingBackend, make_harness
) -> None:
    """Kept in the order things were said: an answer follows the message it answers, then what was said meanwhile."""
    harness = make_harness(recorder, reply_chance=0.1, dice=Dice(0.5), chat_queue_limit=1)
    order = chat_order(harness)
    recorder.gate.clear()
    try:
        asked = asyncio.ensure_future(say(harness, "@test_bot привет", 11))
        await until(lambda: harness.generator.pending == 1, "the answer is being generated")
        meanwhile = [asyncio.ensure_future(say(harness, text, 22)) for text in ("раз", "два", "три")]
        await until(lambda: order.waiting(GROUP) == 4, "the talk waits in the group's order")
        assert history(harness) == [], "the talk waits behind the answer being generated"
        # The limit counts only messages someone is waiting an answer to.
        await say(harness, "@test_bot и ещё", 33)
        assert [call.text for call in harness.session.sent(GROUP)] == [texts.SLOW_DOWN]
        recorder.gate.set()
        await asyncio.gather(asked, *meanwhile)
    finally:
        recorder.gate.set()
    answer = harness.session.sent(GROUP)[-1].text
    assert answer not in (texts.SLOW_DOWN, texts.BUSY)
    assert history(harness) == [
        Turn("11", "привет"),
        Turn(BOT_AUTHOR, answer),
        Turn("22", "раз"),
        Turn("22", "два"),
        Turn("22", "три"),
    ]


async def test_the_share_answered_is_the_chance(recorder: RecordingBackend, make_harness) -> None:
    chance, count = 0.1, 400
    harness = make_harness(recorder, reply_chance=chance, dice=random.Random(20240601))
    for index in range(count):
        await say(harness, f"сообщение номер {index}", 10 + index % 3)
    answered = len(harness.session.sent(GROUP))
    # Binomial(400, 0.1): 40 ± 6. Within 4 standard deviations: 16 to 64. A chance ignored gives 0 or 400,
    # one applied twice 4 (0.1²) or 76 (1 - 0.9²).
    spread = 4 * math.sqrt(count * chance * (1 - chance))
    assert abs(answered - count * chance) <= spread, answered
    kept = history(harness)
    assert sum(turn.author != BOT_AUTHOR for turn in kept) == count, "every message is kept once"
    assert sum(turn.author == BOT_AUTHOR for turn in kept) == answered == harness.dispatcher["stats"].unprompted


@pytest.mark.parametrize(
    "extra",
    [
        {"text": "/weather"},
        {"text": "/weather@other_bot завтра"},
        {"text": "привет", "from": {"id": 5, "is_bot": True, "first_name": "Другой бот"}},
        {"text": "пост канала", "sender_chat": {"id": -100999, "type": "channel", "title": "Канал"}},
        {"sticker": STICKER},
        {"photo": [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}], "caption": "смотрите"},
    ],
    ids=["command", "another-bots-command", "another-bot", "channel-post", "sticker", "photo-with-caption"],
)
async def test_the_bot_never_joins_in_on(recorder: RecordingBackend, make_harness, extra: dict) -> None:
    harness = make_harness(recorder, reply_chance=1.0, dice=Dice(0.0))
    text = extra.pop("text", None)
    await say(harness, text, **extra)
    assert harness.session.sent(GROUP) == [] and history(harness) == [] and recorder.requests == []


async def test_an_anonymous_admin_is_a_person_and_a_private_chat_rolls_no_dice(
    recorder: RecordingBackend, make_harness
) -> None:
    dice = Dice(0.0)
    harness = make_harness(recorder, reply_chance=1.0, dice=dice)
    anonymous = {"from": {"id": 1087968824, "is_bot": True, "first_name": "Group"}}
    await say(harness, "от имени группы", sender_chat={"id": GROUP, "type": "supergroup", "title": "Г"}, **anonymous)
    assert len(harness.session.sent(GROUP)) == 1 and dice.rolls == 1
    [answer] = await harness.send(1, "привет")
    assert answer != texts.FALLBACK_REPLY and dice.rolls == 1, "a private chat answers everything anyway"


async def test_an_unprompted_answer_is_skipped_not_busy_when_the_pool_is_full(
    recorder: RecordingBackend, make_harness
) -> None:
    harness = make_harness(recorder, reply_chance=1.0, dice=Dice(0.0), max_pending=1)
    recorder.gate.clear()
    try:
        elsewhere = asyncio.ensure_future(harness.send(1, "привет"))
        await until(lambda: harness.generator.pending == 1, "the pool is full")
        await say(harness, "просто болтаем", 11)
        assert harness.session.sent(GROUP) == [], "nobody asked: no busy answer"
        assert history(harness) == [Turn("11", "просто болтаем")], "kept as what was said"
        assert await harness.send(GROUP, "@test_bot ты тут?", user_id=11, **IN_GROUP) == [texts.BUSY], "really full"
        recorder.gate.set()
        await elsewhere
    finally:
        recorder.gate.set()
    assert len(recorder.requests) == 1
    [report] = await harness.send(ADMIN, "/stats")
    assert "Ответов без обращения: 0, пропущено из-за нагрузки: 1" in report


async def test_a_failed_unprompted_answer_alerts_the_admin_without_an_apology(
    model: TransformersBackend, make_harness
) -> None:
    harness = make_harness(RecordingBackend(model, fail=RuntimeError("boom")), reply_chance=1.0, dice=Dice(0.0))
    await say(harness, "просто болтаем", 11)
    assert harness.session.sent(GROUP) == []
    assert any("boom" in text for text in harness.session.texts(ADMIN))
    assert await harness.send(GROUP, "@test_bot ты тут?", user_id=11, **IN_GROUP) == [texts.ERROR]


# --- the group's own chance, in /settings -----------------------------------------------------------------


def buttons(harness: Harness) -> list[str]:
    keyboard = harness.session.sent()[-1].reply_markup.inline_keyboard
    return [button.callback_data for row in keyboard for button in row]


def press_chance(harness: Harness, chance: float, user: int):
    return harness.press(GROUP, SettingsChange(name="chance", value=str(chance)).pack(), user_id=user, **IN_GROUP)


async def test_a_groups_admin_changes_its_chance_and_a_member_cannot(recorder: RecordingBackend, make_harness) -> None:
    harness = make_harness(recorder, dice=Dice(0.2))
    harness.session.group_admins = {99}
    [shown] = await harness.send(GROUP, "/settings", user_id=11, **IN_GROUP)
    assert texts.SETTINGS_REPLY_CHANCE.format(chance=texts.REPLY_CHANCE_NEVER) in shown
    assert {SettingsChange(name="chance", value=str(c)).pack() for c in REPLY_CHANCES} <= set(buttons(harness))

    await press_chance(harness, 0.25, user=11)
    refusal = [c for c in harness.session.calls if isinstance(c, AnswerCallbackQuery)][-1]
    assert refusal.text == texts.ADMINS_ONLY and refusal.show_alert
    assert harness.store.preferences(GROUP) == ChatPreferences()
    await say(harness, "просто болтаем", 11)
    assert harness.session.sent(GROUP)[-1].text == shown and history(harness) == []

    await press_chance(harness, 0.25, user=99)
    assert harness.store.preferences(GROUP) == ChatPreferences(reply_chance=0.25)
    edited = harness.session.edits()[-1].text
    assert texts.SETTINGS_REPLY_CHANCE.format(chance=texts.REPLY_CHANCE_SHARE.format(percent="25")) in edited
    assert texts.PRIVACY_MODE_ON in edited, "the test bot neither reads all messages nor is an admin"
    # The dice roll 0.2: under the group's 25 %, where REPLY_CHANCE (0) would never answer.
    message_id = await say(harness, "а теперь?", 22)
    assert harness.session.sent(GROUP)[-1].reply_parameters.message_id == message_id

    await harness.send(GROUP, "/context 2", user_id=99, **IN_GROUP)
    assert harness.store.preferences(GROUP) == ChatPreferences(2, None, 0.25), "other settings keep the chance"


async def test_the_privacy_note_goes_once_the_bot_sees_the_talk(recorder: RecordingBackend, make_harness) -> None:
    harness = make_harness(recorder, reply_chance=0.1)
    harness.session.group_admins = {42}  # the bot is an admin there: Telegram shows it every message
    [shown] = await harness.send(GROUP, "/settings", user_id=11, **IN_GROUP)
    assert texts.REPLY_CHANCE_SHARE.format(percent="10") in shown and texts.PRIVACY_MODE_ON not in shown


async def test_a_private_chat_has_no_chance_to_choose(recorder: RecordingBackend, make_harness) -> None:
    harness = make_harness(recorder, reply_chance=0.1)
    [shown] = await harness.send(1, "/settings")
    assert "Отвечаю без обращения" not in shown
    assert not any(data.startswith("set:chance") for data in buttons(harness))
    await harness.press(1, SettingsChange(name="chance", value="0.25").pack())
    assert harness.store.preferences(1).reply_chance is None
