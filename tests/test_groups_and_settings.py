"""Groups, per-chat settings, privacy, the allow-list and the admin's view, through the real Dispatcher."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from harness import ADMIN, Harness

import texts
from bot.commands import ForgetChoice, SettingsChange
from inference.transformers_backend import TransformersBackend
from main import register_commands
from store import ChatPreferences, ChatStore, Turn

GROUP = -100123


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_model_dir), device="cpu")


@pytest.fixture
def harness(model: TransformersBackend, tmp_path: Path):
    harness = Harness(model, tmp_path, trigger_word="Тимоха")
    yield harness
    harness.close()


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
        assert answers[0] in (texts.FALLBACK_REPLY, *(t.text for t in stored))
        if stored:
            assert stored[0] == Turn("11", expected_prompt)
    else:
        assert answers == [texts.EMPTY_TEXT]


@pytest.mark.parametrize(
    "text",
    ["просто болтаем", "Тимохин кот", "позовите @other_bot", "/weather"],
)
async def test_the_bot_stays_quiet_in_a_group_otherwise(harness: Harness, text: str) -> None:
    assert await harness.send(GROUP, text, user_id=11, **group()) == []
    sticker = {
        "file_id": "s",
        "file_unique_id": "s",
        "type": "regular",
        "width": 1,
        "height": 1,
        "is_animated": False,
        "is_video": False,
    }
    assert await harness.send(GROUP, None, user_id=11, sticker=sticker, **group()) == []


async def test_a_group_history_alternates_speakers_by_author(harness: Harness, monkeypatch) -> None:
    seen = []
    real = harness.generator.model.generate

    def spy(batch, generation=None):
        seen.extend(batch)
        return real(batch, generation)

    monkeypatch.setattr(harness.generator._pool, "_run_batch", spy)
    harness.store.add_turns(GROUP, [Turn("11", "привет всем"), Turn("22", "привет"), Turn("22", "как вы?")])
    await harness.send(GROUP, "@test_bot а ты как?", user_id=11, **group())
    # Alice, then Bob's two messages as one turn, then Alice again: three alternating turns.
    assert seen[-1].turns == ("привет всем", "привет как вы?", "а ты как?")


# --- per-chat settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["/context", "/set_context_length"])
async def test_context_sets_the_chats_turns(harness: Harness, command: str, monkeypatch) -> None:
    assert await harness.send(1, f"{command} 5") == [texts.CONTEXT_SET.format(turns=5)]
    assert harness.store.preferences(1).context_turns == 5
    seen = []
    real = harness.generator.model.generate
    monkeypatch.setattr(harness.generator._pool, "_run_batch", lambda b, g=None: seen.extend(b) or real(b, g))
    harness.store.add_turns(1, [Turn("1" if i % 2 else "bot", f"реплика {i}") for i in range(8)])
    await harness.send(1, "последняя")
    assert len(seen[-1].turns) == 5


@pytest.mark.parametrize("argument", ["", "0", "11", "abc", "-2", "2.5"])
async def test_context_explains_the_valid_range(harness: Harness, argument: str) -> None:
    assert await harness.send(1, f"/context {argument}".strip()) == [texts.CONTEXT_RANGE.format(maximum=10)]
    assert harness.store.preferences(1) == ChatPreferences()


async def test_settings_buttons_change_and_persist_the_settings(harness: Harness, tmp_path: Path) -> None:
    [shown] = await harness.send(1, "/settings")
    assert "3 реплик" in shown and texts.STYLE_NAMES["lively"] in shown
    keyboard = harness.session.sent(1)[-1].reply_markup.inline_keyboard
    datas = [button.callback_data for row in keyboard for button in row]
    assert SettingsChange(name="context", value="4").pack() in datas
    assert SettingsChange(name="style", value="calm").pack() in datas

    await harness.press(1, SettingsChange(name="context", value="4").pack())
    await harness.press(1, SettingsChange(name="style", value="calm").pack())
    assert harness.store.preferences(1) == ChatPreferences(4, "calm")
    edited = [c for c in harness.session.calls if isinstance(c, EditMessageText)]
    assert "4 реплик" in edited[-1].text and texts.STYLE_NAMES["calm"] in edited[-1].text

    harness.store.close()
    assert ChatStore(harness.settings.db_path).preferences(1) == ChatPreferences(4, "calm"), "kept across restarts"


async def test_a_chats_style_picks_its_sampling(harness: Harness, monkeypatch) -> None:
    harness.store.set_preferences(1, ChatPreferences(None, "calm"))
    seen = []
    real = harness.generator.model.generate
    monkeypatch.setattr(harness.generator._pool, "_run_batch", lambda b, g=None: seen.extend(b) or real(b, g))
    await harness.send(1, "привет")
    assert seen[-1].sampling.temperature == 0.7 and seen[-1].sampling.top_p == 0.9, "calm sampling"


async def test_only_a_groups_admins_change_its_settings(harness: Harness) -> None:
    harness.session.group_admins = {99}
    assert await harness.send(GROUP, "/context 2", user_id=11, **group()) == [texts.ADMINS_ONLY]
    await harness.press(GROUP, SettingsChange(name="context", value="2").pack(), user_id=11, chat_type="supergroup")
    assert harness.store.preferences(GROUP) == ChatPreferences()
    refusal = [c for c in harness.session.calls if isinstance(c, AnswerCallbackQuery)][-1]
    assert refusal.text == texts.ADMINS_ONLY and refusal.show_alert

    assert await harness.send(GROUP, "/context 2", user_id=99, **group()) == [texts.CONTEXT_SET.format(turns=2)]
    assert harness.store.preferences(GROUP).context_turns == 2


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


def test_old_turns_expire(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "db.sqlite3")
    store.add_turns(1, [Turn("1", "давно")])
    time.sleep(0.01)
    cutoff = time.time()
    store.add_turns(1, [Turn("1", "недавно")])
    assert store.drop_turns_before(cutoff) == 1
    assert store.recent_turns(1, 10) == [Turn("1", "недавно")]


# --- access and the admin ---------------------------------------------------------------------------------


async def test_the_allow_list_refuses_others_without_generating(model: TransformersBackend, tmp_path: Path) -> None:
    harness = Harness(model, tmp_path, allowed_users=(5,), allowed_chats=(GROUP,))
    assert await harness.send(6, "привет") == [texts.NOT_ALLOWED]
    assert await harness.send(6, "/start") == [texts.NOT_ALLOWED]
    assert harness.store.recent_turns(6, 10) == [] and harness.generator.pending == 0
    assert await harness.send(-100999, "просто болтаем", user_id=6, **group()) == [], "quiet in foreign groups"
    assert await harness.send(5, "/help") == [texts.HELP]
    assert await harness.send(GROUP, "/help", user_id=6, **group()) == [texts.HELP]
    harness.close()


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


def test_sent_messages_helper_sees_sendmessage_only(harness: Harness) -> None:
    assert harness.session.sent() == [c for c in harness.session.calls if isinstance(c, SendMessage)]
