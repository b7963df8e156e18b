"""Groups, per-chat settings, privacy, the allow-list and the admin's view, through the real Dispatcher."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from harness import ADMIN, Harness
from recording_backend import RecordingBackend
from recording_session import STICKER

import texts
from app import register_commands
from bot.commands import ForgetChoice, SettingsChange
from inference.sampling import STYLES
from inference.transformers_backend import TransformersBackend
from store import ChatPreferences, ChatStore, Turn

GROUP = -100123


@pytest.fixture(scope="module")
def model(answering_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(answering_model_dir), device="cpu")


@pytest.fixture
def harness(model: TransformersBackend, make_harness) -> Harness:
    return make_harness(RecordingBackend(model), trigger_word="Тимоха")


def group(**extra: object) -> dict:
    return {"chat_type": "supergroup", **extra}


# --- groups -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "extra", "expected_prompt"),
    [
        ("@test_bot как дела?", {}, "как дела?"),
        ("как дела, @TEST_BOT", {}, "как дела,"),
        ("Тимоха, как дела?", {}, "как дела?"),
        ("тимоха как дела?", {}, "как дела?"),
        ("ТИМОХА!", {}, ""),
        (
            "как дела?",
            {
                "reply_to_message": {
                    "message_id": 5,
                    "date": 0,
                    "chat": {"id": GROUP, "type": "supergroup"},
                    "from": {"id": 42, "is_bot": True, "first_name": "Test"},
                    "text": "…",
                }
            },
            "как дела?",
        ),
    ],
    ids=["mention", "mention-any-case", "trigger-comma", "trigger-lowercase", "trigger-only", "reply-to-bot"],
)
async def test_the_bot_answers_in_a_group_when_addressed(
    harness: Harness, text: str, extra: dict, expected_prompt: str
) -> None:
    answers = await harness.send(GROUP, text, user_id=11, **group(**extra))
    assert len(answers) == 1
    [sent] = harness.session.sent(GROUP)
    assert sent.reply_to_message_id is not None or sent.reply_parameters is not None, "group answers are replies"
    stored = harness.store.recent_turns(GROUP, 10)
    if expected_prompt:
        assert stored == [Turn("11", expected_prompt), Turn("bot", answers[0])]
    else:
        assert answers == [texts.EMPTY_TEXT] and stored == []


@pytest.mark.parametrize(
    "text",
    ["просто болтаем", "Тимохин кот", "позовите @other_bot", "/weather"],
)
async def test_the_bot_stays_quiet_in_a_group_otherwise(harness: Harness, text: str) -> None:
    assert await harness.send(GROUP, text, user_id=11, **group()) == []
    assert await harness.send(GROUP, None, user_id=11, sticker=STICKER, **group()) == []


async def test_a_group_history_alternates_speakers_by_author(harness: Harness) -> None:
    harness.store.add_turns(GROUP, [Turn("11", "привет всем"), Turn("22", "привет"), Turn("22", "как вы?")])
    await harness.send(GROUP, "@test_bot а ты как?", user_id=11, **group())
    # Alice, then Bob's two messages as one turn, then Alice again: three alternating turns.
    assert harness.model.requests[-1].turns == ("привет всем", "привет как вы?", "а ты как?")


# --- per-chat settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["/context", "/set_context_length"])
async def test_context_sets_the_chats_turns(harness: Harness, command: str) -> None:
    assert await harness.send(1, f"{command} 5") == ["Теперь я учитываю 5 последних реплик."]
    assert harness.store.preferences(1).context_turns == 5
    harness.store.add_turns(1, [Turn("1" if i % 2 else "bot", f"реплика {i}") for i in range(8)])
    await harness.send(1, "последняя")
    # The user's "реплика 7" and "последняя" are one turn of theirs.
    expected = ("реплика 3", "реплика 4", "реплика 5", "реплика 6", "реплика 7 последняя")
    assert harness.model.requests[-1].turns == expected


@pytest.mark.parametrize(
    ("turns", "answer", "shown"),
    [
        (1, "Теперь я учитываю 1 последнюю реплику.", "Контекст: 1 реплика"),
        (3, "Теперь я учитываю 3 последние реплики.", "Контекст: 3 реплики"),
        (5, "Теперь я учитываю 5 последних реплик.", "Контекст: 5 реплик"),
    ],
)
async def test_turn_counts_are_in_correct_russian(harness: Harness, turns: int, answer: str, shown: str) -> None:
    assert await harness.send(1, f"/context {turns}") == [answer]
    [settings] = await harness.send(1, "/settings")
    assert shown in settings.splitlines()


@pytest.mark.parametrize(
    ("count", "form"), [(1, "реплика"), (2, "реплики"), (5, "реплик"), (11, "реплик"), (12, "реплик"), (21, "реплика")]
)
def test_plural_forms(count: int, form: str) -> None:
    assert texts.plural(count, texts.TURNS_WORD) == form


@pytest.mark.parametrize("argument", ["", "0", "11", "abc", "-2", "2.5"])
async def test_context_explains_the_valid_range(harness: Harness, argument: str) -> None:
    assert await harness.send(1, f"/context {argument}".strip()) == [texts.CONTEXT_RANGE.format(maximum=10)]
    assert harness.store.preferences(1) == ChatPreferences()


async def test_settings_buttons_change_and_persist_the_settings(harness: Harness) -> None:
    [shown] = await harness.send(1, "/settings")
    assert "Контекст: 3 реплики" in shown and texts.STYLE_NAMES["lively"] in shown
    keyboard = harness.session.sent(1)[-1].reply_markup.inline_keyboard
    datas = [button.callback_data for row in keyboard for button in row]
    assert SettingsChange(name="context", value="4").pack() in datas
    assert SettingsChange(name="style", value="calm").pack() in datas

    await harness.press(1, SettingsChange(name="context", value="4").pack())
    await harness.press(1, SettingsChange(name="style", value="calm").pack())
    assert harness.store.preferences(1) == ChatPreferences(4, "calm")
    edited = [c for c in harness.session.calls if isinstance(c, EditMessageText)]
    assert "Контекст: 4 реплики" in edited[-1].text and texts.STYLE_NAMES["calm"] in edited[-1].text

    harness.store.close()
    reopened = ChatStore(harness.settings.db_path)
    try:
        assert reopened.preferences(1) == ChatPreferences(4, "calm"), "kept across restarts"
    finally:
        reopened.close()


async def test_a_chats_style_picks_its_sampling(harness: Harness) -> None:
    harness.store.set_preferences(1, ChatPreferences(None, "calm"))
    await harness.send(1, "привет")
    sampling = harness.model.requests[-1].sampling
    assert sampling.temperature == 0.7 and sampling.top_p == 0.9, "calm sampling"


async def test_a_style_no_longer_offered_falls_back_to_the_default_everywhere(harness: Harness) -> None:
    # A style stored by an older version: both /settings and the generator take REPLY_STYLE instead.
    harness.store.set_preferences(1, ChatPreferences(None, "wild"))
    [shown] = await harness.send(1, "/settings")
    assert f"Стиль ответов: {texts.STYLE_NAMES['lively']}" in shown
    await harness.send(1, "привет")
    assert harness.model.requests[-1].sampling == harness.generator.tasks["chat"].sampling


def test_every_reply_style_has_a_name_and_every_name_a_style() -> None:
    assert set(texts.STYLE_NAMES) == set(STYLES)


async def test_only_a_groups_admins_change_its_settings(harness: Harness) -> None:
    harness.session.group_admins = {99}
    assert await harness.send(GROUP, "/context 2", user_id=11, **group()) == [texts.ADMINS_ONLY]
    await harness.press(GROUP, SettingsChange(name="context", value="2").pack(), user_id=11, chat_type="supergroup")
    assert harness.store.preferences(GROUP) == ChatPreferences()
    refusal = [c for c in harness.session.calls if isinstance(c, AnswerCallbackQuery)][-1]
    assert refusal.text == texts.ADMINS_ONLY and refusal.show_alert

    assert await harness.send(GROUP, "/context 2", user_id=99, **group()) == ["Теперь я учитываю 2 последние реплики."]
    assert harness.store.preferences(GROUP).context_turns == 2


async def test_an_anonymous_admin_may_change_a_groups_settings_and_a_senderless_message_may_not(
    harness: Harness,
) -> None:
    # An anonymous admin writes as the group (sender_chat); Telegram fills "from" with a placeholder bot.
    anonymous = {"from": {"id": 1087968824, "is_bot": True, "first_name": "Group"}}
    as_group = {"sender_chat": {"id": GROUP, "type": "supergroup", "title": "Группа"}}
    assert await harness.send(GROUP, "/context 4", **group(**as_group), **anonymous) == [
        "Теперь я учитываю 4 последние реплики."
    ]
    assert await harness.send(GROUP, "/forget", **group(**as_group), **anonymous) == [texts.FORGET_QUESTION]
    # A message with no sender at all (as a channel's posts) changes nothing and breaks nothing.
    assert await harness.send(GROUP, "/context 2", user_id=0, **group()) == [texts.ADMINS_ONLY]
    assert await harness.send(GROUP, "/forget", user_id=0, **group()) == [texts.ADMINS_ONLY]
    assert harness.store.preferences(GROUP).context_turns == 4


# --- privacy ----------------------------------------------------------------------------------------


async def test_forget_asks_then_deletes_history_and_settings(harness: Harness) -> None:
    harness.store.add_turns(1, [Turn("1", "секрет")])
    harness.store.set_preferences(1, ChatPreferences(5, "calm"))
    assert await harness.send(1, "/forget") == [texts.FORGET_QUESTION]
    await harness.press(1, ForgetChoice(confirmed=False).pack())
    assert harness.store.recent_turns(1, 10) == [Turn("1", "секрет")]
    await harness.press(1, ForgetChoice(confirmed=True).pack())
    assert harness.store.recent_turns(1, 10) == [] and harness.store.preferences(1) == ChatPreferences()
    assert harness.session.edits()[-1].text == texts.FORGOTTEN


def test_old_turns_expire(harness: Harness) -> None:
    store = harness.store
    store.add_turns(1, [Turn("1", "давно")])
    time.sleep(0.01)
    cutoff = time.time()
    store.add_turns(1, [Turn("1", "недавно")])
    assert store.drop_turns_before(cutoff) == 1
    assert store.recent_turns(1, 10) == [Turn("1", "недавно")]


# --- access and the admin ---------------------------------------------------------------------------------


async def test_the_allow_list_refuses_others_without_generating(model: TransformersBackend, make_harness) -> None:
    harness = make_harness(RecordingBackend(model), allowed_users=(5,), allowed_chats=(GROUP,))
    assert await harness.send(6, "привет") == [texts.NOT_ALLOWED]
    assert await harness.send(6, "/start") == [texts.NOT_ALLOWED]
    assert harness.store.recent_turns(6, 10) == [] and harness.model.requests == []
    assert await harness.send(-100999, "просто болтаем", user_id=6, **group()) == [], "quiet in foreign groups"
    assert await harness.send(5, "/help") == [texts.HELP]
    assert await harness.send(GROUP, "/help", user_id=6, **group()) == [texts.HELP]


async def test_stats_is_for_the_admin_only(harness: Harness) -> None:
    await harness.send(1, "привет")
    assert await harness.send(1, "/stats") == [texts.ADMIN_ONLY_COMMAND]
    [report] = await harness.send(ADMIN, "/stats")
    assert "Чатов обслужено: 1" in report and "Ответов сегодня: 1" in report and "Очередь: 0" in report
    assert "p50" in report and harness.generator.model.name in report and "Ошибок с запуска: 0" in report


async def test_commands_are_registered_in_russian(harness: Harness) -> None:
    await register_commands(harness.bot)
    [call] = [c for c in harness.session.calls if type(c).__name__ == "SetMyCommands"]
    names = {command.command for command in call.commands}
    assert {"start", "reset", "context", "settings", "forget", "help"} <= names
    assert all(any("а" <= ch <= "я" for ch in command.description.lower()) for command in call.commands)


async def test_the_sessions_helpers_tell_sent_messages_from_edits(harness: Harness) -> None:
    await harness.send(1, "/settings")
    await harness.press(1, SettingsChange(name="context", value="4").pack())
    kinds = {type(call) for call in harness.session.calls}
    assert {SendMessage, EditMessageText, AnswerCallbackQuery} <= kinds, "the calls the helpers must tell apart"
    assert [type(call) for call in harness.session.sent()] == [SendMessage]
    assert [type(call) for call in harness.session.edits()] == [EditMessageText]
    assert harness.session.texts(1) == [harness.session.sent()[0].text]
