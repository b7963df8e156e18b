"""PROFANITY and BLOCKED_WORDS through the real Dispatcher: mask, avoid's retries, /settings, toasts, the daily one."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import threading
import time
from datetime import datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiogram.methods import AnswerCallbackQuery
from botprocess import bot_env, main_command
from conftest import build_answering_model
from harness import Harness
from recording_backend import RecordingBackend, ScriptedBackend
from waiting import until

import texts
from app import daily_deliveries
from bot.commands import SettingsChange
from bot.subscriptions import Subscriptions
from generator import AVOID_TRIES
from inference.backend import Request
from inference.profanity import ProfanityFilter
from inference.transformers_backend import TransformersBackend
from settings import ConfigError, load_settings
from store import ChatPreferences, ChatStore, Turn

GROUP = -100321
PROFANITY = ProfanityFilter()


@pytest.fixture(scope="module")
def swearing(swearing_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(swearing_model_dir), device="cpu")


@pytest.fixture(scope="module")
def clean(answering_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(answering_model_dir), device="cpu")


@pytest.fixture(scope="module")
def words(swearing: TransformersBackend, clean: TransformersBackend) -> tuple[str, str]:
    """What each model answers: an obscene word, and an ordinary one."""
    said = [backend.generate([request()])[0].text for backend in (swearing, clean)]
    assert PROFANITY.contains(said[0]) and said[1] and not PROFANITY.contains(said[1]), said
    return said[0], said[1]


def request() -> Request:
    return Request(("привет",), time.monotonic() + 30)


# --- mask and allow ---------------------------------------------------------------------------------------


async def test_allow_sends_what_the_model_wrote(swearing, words, make_harness) -> None:
    harness = make_harness(RecordingBackend(swearing))
    assert await harness.send(1, "привет") == [words[0]]


def test_a_draft_shows_what_its_mode_allows(swearing, make_harness) -> None:
    generator = make_harness(RecordingBackend(swearing)).generator
    assert generator.apply_profanity("ну ты сука, су", "allow", draft=True) == "ну ты сука, су"
    assert generator.apply_profanity("ну ты сука, су", "avoid", draft=True) == "ну ты с***, "
    assert generator.apply_profanity("ну ты сука, су", "mask") == "ну ты с***, су"


async def test_mask_stars_the_reply_and_the_history_keeps_what_was_sent(swearing, words, make_harness) -> None:
    harness = make_harness(RecordingBackend(swearing), profanity="mask")
    masked = words[0][0] + "*" * (len(words[0]) - 1)
    assert await harness.send(1, "привет") == [masked]
    assert harness.store.recent_turns(1, 10) == [Turn("1", "привет"), Turn("bot", masked)]
    assert len(harness.model.requests) == 1, "mask never asks again"


# --- avoid ------------------------------------------------------------------------------------------------


async def test_avoid_asks_again_and_sends_the_clean_try(swearing, clean, words, make_harness) -> None:
    harness = make_harness(ScriptedBackend([swearing, clean]), profanity="avoid")
    assert await harness.send(1, "привет") == [words[1]]
    first, retry = harness.model.requests
    assert retry == first, "the same prompt, sampling and deadline"
    assert harness.store.recent_turns(1, 10) == [Turn("1", "привет"), Turn("bot", words[1])]


async def test_avoid_masks_when_every_try_swore(swearing, words, make_harness) -> None:
    harness = make_harness(ScriptedBackend([swearing]), profanity="avoid")
    assert await harness.send(1, "привет") == [words[0][0] + "*" * (len(words[0]) - 1)]
    assert len(harness.model.batches) == AVOID_TRIES


async def test_avoid_retries_share_a_batch_with_other_chats(swearing, clean, words, make_harness) -> None:
    # The first batch (chat 3's) holds the worker while chats 1 and 2 queue; they are generated together, both
    # swear, and their retries go out together too.
    release = threading.Event()
    backend = ScriptedBackend([clean, swearing, clean], held={0: release})
    harness = make_harness(backend, profanity="avoid")
    try:
        first = asyncio.ensure_future(harness.send(3, "привет"))
        await until(lambda: backend.arrived == [0], "the first batch holds the worker")
        others = [asyncio.ensure_future(harness.send(chat, "привет")) for chat in (1, 2)]
        await until(lambda: harness.generator.pending == 3, "chats 1 and 2 queue behind it")
    finally:
        release.set()
    answers = await asyncio.gather(first, *others)
    assert answers == [[words[1]]] * 3
    assert [len(batch) for batch in backend.batches] == [1, 2, 2]


async def test_a_retry_stops_at_the_requests_deadline(swearing, clean, words, make_harness) -> None:
    # The retry is held until the first try's deadline has passed: it times out, and the first try goes out
    # masked rather than as an apology.
    release = threading.Event()
    backend = ScriptedBackend([swearing, clean], held={1: release})
    harness = make_harness(backend, profanity="avoid", generation_timeout=3.0)
    try:
        answer = asyncio.ensure_future(harness.send(1, "привет"))
        await until(lambda: backend.arrived == [0, 1], "the retry is held")
        deadline = backend.requests[0].deadline
        await asyncio.sleep(max(0.0, deadline - time.monotonic()) + 0.05)
    finally:
        release.set()
    assert await answer == [words[0][0] + "*" * (len(words[0]) - 1)]
    assert backend.requests[1].deadline == deadline


# --- toasts, horoscopes, the daily horoscope ---------------------------------------------------------------


async def test_toasts_and_horoscopes_follow_the_chats_choice(swearing, clean, words, make_harness) -> None:
    harness = make_harness(ScriptedBackend([swearing, clean, swearing]))
    harness.store.set_preferences(1, ChatPreferences(profanity="avoid"))
    harness.store.set_preferences(2, ChatPreferences(profanity="mask"))
    [avoided] = await harness.send(1, "/horoscope лев")  # swears, then the retry is clean
    assert avoided.endswith("\n\n" + words[1])
    [masked] = await harness.send(2, "/toast День космонавтики")
    assert masked.endswith("\n\n" + words[0][0] + "*" * (len(words[0]) - 1))
    assert len(harness.model.batches) == 3
    assert harness.store.recent_turns(1, 10) == [] == harness.store.recent_turns(2, 10), "not dialogue turns"


def subscribe_yesterday(subscriptions: Subscriptions, timezone: str, *chats: int) -> None:
    """Subscribe the chats to leo at midnight as if yesterday: due now."""
    yesterday = datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)
    for chat in chats:
        subscriptions.subscribe(chat, "leo", time_of_day(0, 0), yesterday, time_of_day(0, 0))


async def test_the_daily_horoscope_is_masked_for_the_chats_that_chose_so(swearing, words, make_harness) -> None:
    harness = make_harness(RecordingBackend(swearing))
    harness.store.set_preferences(2, ChatPreferences(profanity="mask"))
    subscriptions = Subscriptions(harness.store.connection)
    subscribe_yesterday(subscriptions, harness.settings.timezone, 1, 2)
    delivery = daily_deliveries(harness.bot, harness.generator, subscriptions, harness.settings)
    assert await delivery.deliver_due() == 2
    assert harness.session.texts(1)[0].endswith("\n\n" + words[0]), "a chat that allows it gets the text as written"
    assert harness.session.texts(2)[0].endswith("\n\n" + words[0][0] + "*" * (len(words[0]) - 1))
    assert len(harness.model.requests) == 1, "one text for the sign, nobody chose avoid"


async def test_the_daily_horoscope_is_asked_again_when_a_subscriber_chose_avoid(
    swearing, clean, words, make_harness
) -> None:
    harness = make_harness(ScriptedBackend([swearing, clean]))
    harness.store.set_preferences(2, ChatPreferences(profanity="avoid"))
    subscriptions = Subscriptions(harness.store.connection)
    subscribe_yesterday(subscriptions, harness.settings.timezone, 1, 2)
    delivery = daily_deliveries(harness.bot, harness.generator, subscriptions, harness.settings)
    assert await delivery.deliver_due() == 2
    assert [harness.session.texts(chat)[0].endswith("\n\n" + words[1]) for chat in (1, 2)] == [True, True]
    assert len(harness.model.requests) == 2


# --- /settings --------------------------------------------------------------------------------------------


def profanity_buttons(harness: Harness) -> dict[str, str]:
    """The /settings message's profanity buttons: text by value."""
    keyboard = harness.session.sent()[-1].reply_markup.inline_keyboard
    buttons = [button for row in keyboard for button in row]
    return {
        SettingsChange.unpack(b.callback_data).value: b.text
        for b in buttons
        if b.callback_data.startswith("set:profanity")
    }


async def test_settings_show_the_default_and_offer_the_three_modes(swearing, make_harness) -> None:
    harness = make_harness(RecordingBackend(swearing), profanity="mask")
    [shown] = await harness.send(1, "/settings")
    assert f"Мат: {texts.PROFANITY_NAMES['mask']}" in shown.splitlines()
    assert profanity_buttons(harness) == {
        "allow": texts.PROFANITY_BUTTONS["allow"],
        "mask": texts.CHOSEN_MARK + texts.PROFANITY_BUTTONS["mask"],
        "avoid": texts.PROFANITY_BUTTONS["avoid"],
    }


async def test_only_a_groups_admins_choose_its_profanity(swearing, words, make_harness) -> None:
    harness = make_harness(RecordingBackend(swearing), trigger_word="Тимоха")
    harness.session.group_admins = {99}
    group = {"chat_type": "supergroup"}
    await harness.send(GROUP, "/settings", user_id=11, **group)
    avoid = SettingsChange(name="profanity", value="avoid").pack()
    await harness.press(GROUP, avoid, user_id=11, **group)
    refusal = [c for c in harness.session.calls if isinstance(c, AnswerCallbackQuery)][-1]
    assert refusal.text == texts.ADMINS_ONLY and harness.store.preferences(GROUP) == ChatPreferences()

    harness.store.set_preferences(GROUP, ChatPreferences(context_turns=5))
    await harness.press(GROUP, avoid, user_id=99, **group)
    assert harness.store.preferences(GROUP) == ChatPreferences(5, profanity="avoid"), "the other settings stay"
    assert f"Мат: {texts.PROFANITY_NAMES['avoid']}" in harness.session.edits()[-1].text
    masked = words[0][0] + "*" * (len(words[0]) - 1)
    assert await harness.send(GROUP, "Тимоха, привет", user_id=11, **group) == [masked]
    assert len(harness.model.requests) == AVOID_TRIES
    assert await harness.send(1, "привет") == [words[0]], "other chats keep PROFANITY"


async def test_context_and_style_changes_keep_the_chats_profanity(swearing, make_harness) -> None:
    harness = make_harness(RecordingBackend(swearing))
    harness.store.set_preferences(1, ChatPreferences(profanity="mask"))
    await harness.send(1, "/context 5")
    await harness.send(1, "/settings")
    await harness.press(1, SettingsChange(name="style", value="calm").pack())
    assert harness.store.preferences(1) == ChatPreferences(5, "calm", profanity="mask")


# --- BLOCKED_WORDS ----------------------------------------------------------------------------------------


async def test_a_blocked_word_is_masked_in_another_case_and_inflection(tmp_path: Path, make_harness) -> None:
    # The owner lists "ВАСЬКА"; the model says "ваське" (lower case, dative).
    model = TransformersBackend(str(build_answering_model(tmp_path / "model", answers=["ваське"])), device="cpu")
    word_list = tmp_path / "blocked.txt"
    word_list.write_text("# names\nВАСЬКА\n", encoding="utf-8")
    masked = make_harness(RecordingBackend(model), profanity="mask", blocked_words=str(word_list))
    assert await masked.send(1, "кому?") == ["в*****"]
    assert await make_harness(RecordingBackend(model), profanity="mask").send(1, "кому?") == ["ваське"]


# --- the per-chat column and the settings ----------------------------------------------------------------


def test_an_older_database_gets_the_profanity_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE chat_settings (chat_id INTEGER PRIMARY KEY, context_turns INTEGER, style TEXT)")
        old.execute("INSERT INTO chat_settings VALUES (1, 4, 'calm')")
    old.close()
    store = ChatStore(path)
    try:
        assert store.preferences(1) == ChatPreferences(4, "calm")
        store.set_preferences(1, ChatPreferences(4, "calm", profanity="avoid"))
        assert store.preferences(1) == ChatPreferences(4, "calm", profanity="avoid")
    finally:
        store.close()
    reopened = ChatStore(path)  # a second opening finds the column and adds nothing
    try:
        assert reopened.preferences(1).profanity == "avoid"
    finally:
        reopened.close()


def test_profanity_settings_are_parsed_and_checked(tmp_path: Path) -> None:
    load = lambda environ: load_settings(environ, env_file=None, config_file=None)  # noqa: E731
    assert (load({}).profanity, load({}).blocked_words) == ("allow", "")
    assert load({"PROFANITY": "AVOID"}).profanity == "avoid"
    with pytest.raises(ConfigError, match=r"^PROFANITY must be allow, mask .* got 'stars'$"):
        load({"PROFANITY": "stars"})
    with pytest.raises(ConfigError) as caught:
        load({"BLOCKED_WORDS": str(tmp_path / "missing.txt")})
    assert str(caught.value) == (
        f"BLOCKED_WORDS must be a text file, one word or phrase a line: {tmp_path / 'missing.txt'}: "
        "No such file or directory"
    )
    with pytest.raises(ConfigError, match="Is a directory"):
        load({"BLOCKED_WORDS": str(tmp_path)})
    (tmp_path / "cp1251.txt").write_bytes("Васька\n".encode("cp1251"))
    with pytest.raises(ConfigError, match=r"cp1251\.txt is not UTF-8 text .* save it as UTF-8"):
        load({"BLOCKED_WORDS": str(tmp_path / "cp1251.txt")})
    (tmp_path / "words.txt").write_text("Васька\n", encoding="utf-8")
    (tmp_path / ".env").write_text("BLOCKED_WORDS=words.txt\n", encoding="utf-8")
    from_file = load_settings({}, env_file=tmp_path / ".env", config_file=None)
    assert from_file.blocked_words == str(tmp_path / "words.txt"), "relative to the .env that names it"


def test_a_missing_word_list_stops_the_bot_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    done = subprocess.run(
        main_command(tmp_path),
        cwd=tmp_path,
        env=bot_env(bot_token="1:x", blocked_words=missing),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    expected = f"BLOCKED_WORDS must be a text file, one word or phrase a line: {missing}: No such file or directory"
    assert line.endswith(f"config error: {expected}")
