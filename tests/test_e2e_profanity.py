"""PROFANITY end to end: the real ``python main.py`` with a model that swears, against the fake Bot API."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from botprocess import is_to, start_bot, stop_bot
from fake_telegram import FakeTelegram

import texts
from generator import AVOID_TRIES


async def test_mask_then_avoid_chosen_in_settings(fake: FakeTelegram, tmp_path: Path, swearing_model_dir: Path) -> None:
    bot = await start_bot(fake, tmp_path, swearing_model_dir, profanity="mask", log_level="debug")
    try:
        since = len(fake.calls)
        fake.send_text(5, "привет")
        assert (await fake.wait_for("sendMessage", is_to(5), since=since, timeout=30))["text"] == "с***"
        assert "tries swore" not in bot.log, "mask never asks again"

        since = len(fake.calls)
        fake.send_text(5, "/settings")
        shown = await fake.wait_for("sendMessage", is_to(5), since=since)
        assert f"Мат: {texts.PROFANITY_NAMES['mask']}" in shown["text"]
        since = len(fake.calls)
        fake.press(5, texts.PROFANITY_BUTTONS["avoid"])
        assert (await fake.wait_for("answerCallbackQuery", since=since))["text"] == texts.SETTINGS_SAVED

        since = len(fake.calls)
        fake.send_text(5, "ещё раз")
        assert (await fake.wait_for("sendMessage", is_to(5), since=since, timeout=30))["text"] == "с***"
        assert f"profanity: {AVOID_TRIES} tries swore; masked" in bot.log, "avoid asked again before masking"
        await stop_bot(bot)
    finally:
        bot.kill()
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        said = [row[0] for row in db.execute("SELECT text FROM turns WHERE chat_id = 5 AND author = 'bot' ORDER BY id")]
        chosen = db.execute("SELECT profanity FROM chat_settings WHERE chat_id = 5").fetchone()
    db.close()
    assert said == ["с***", "с***"], "the history holds what was sent"
    assert chosen == ("avoid",)
