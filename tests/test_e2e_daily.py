"""The daily horoscope end to end in real time: subscribe for the next minute, get it once, restart, nothing more."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botprocess import is_to, start_bot, stop_bot
from fake_telegram import FakeTelegram

import texts

CHAT = 77


def is_daily(params: dict) -> bool:
    return is_to(CHAT)(params) and "гороскоп на" in params["text"].split("\n")[0]


@pytest.mark.slow
async def test_a_daily_horoscope_arrives_at_its_minute_once(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    settings = {"timezone": "UTC", "horoscope_max_new_tokens": 20}
    bot = await start_bot(fake, tmp_path, tiny_model_dir, **settings)
    try:
        now = datetime.now(UTC)
        # The subscription's minute must still be ahead once the bot has taken the command: at least 30 s.
        if now.second >= 30:
            await asyncio.sleep(61 - now.second)
            now = datetime.now(UTC)
        minute = (now + timedelta(minutes=1)).strftime("%H:%M")
        fake.send_text(CHAT, f"/daily лев {minute}")
        confirmation = await fake.wait_for("sendMessage", is_to(CHAT))
        assert confirmation["text"] == texts.DAILY_SUBSCRIBED.format(sign="♌ Лев", time=minute, timezone="UTC")

        daily = await fake.wait_for("sendMessage", is_daily, timeout=100)
        sent_at = datetime.now(UTC)
        assert daily["text"].startswith("♌ Лев: гороскоп на")
        assert sent_at.strftime("%H:%M") == minute, "within its minute"
        await stop_bot(bot)

        bot = await start_bot(fake, tmp_path, tiny_model_dir, **settings)
        await asyncio.sleep(3)  # the first scan runs at start-up
        assert len([p for p in fake.sent_messages(CHAT) if is_daily(p)]) == 1, "a restart sends nothing twice"
        since = len(fake.calls)
        fake.send_text(CHAT, "/daily off")
        assert (await fake.wait_for("sendMessage", is_to(CHAT), since=since))["text"] == texts.DAILY_CANCELLED
        await stop_bot(bot)
    finally:
        bot.kill()
