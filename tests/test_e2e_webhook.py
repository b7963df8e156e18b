"""Webhook mode end to end: the real process, setWebhook with the secret, posts with and without it, /healthz."""

from __future__ import annotations

import signal
import socket
import sqlite3
from contextlib import closing
from pathlib import Path

import aiohttp
import pytest
from botprocess import STOPPING, BotProcess, is_to, start_bot, stop_bot
from fake_telegram import FakeTelegram

import texts

SECRET = "s3cret-Token_42"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


def webhook_settings(port: int) -> dict[str, object]:
    return {
        "webhook_url": f"http://127.0.0.1:{port}/tg/hook",
        "webhook_secret": SECRET,
        "webhook_listen": f"127.0.0.1:{port}",
    }


def message(fake: FakeTelegram, chat_id: int, text: str) -> dict:
    """An update as Telegram would post it (the fake numbers it; nothing is queued for getUpdates)."""
    fake.send_text(chat_id, text)
    return fake.updates.pop()


async def post(port: int, update: dict, secret: str | None = SECRET) -> int:
    headers = {HEADER: secret} if secret is not None else {}
    url = f"http://127.0.0.1:{port}/tg/hook"
    async with aiohttp.ClientSession() as session, session.post(url, json=update, headers=headers) as response:
        return response.status


async def test_posts_with_the_secret_are_answered_once_and_others_refused(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path, port: int
) -> None:
    bot = await start_bot(fake, tmp_path, tiny_model_dir, **webhook_settings(port))
    try:
        hook = await fake.wait_for("setWebhook")
        assert hook["url"] == f"http://127.0.0.1:{port}/tg/hook" and hook["secret_token"] == SECRET
        assert "stopped_message_generation" in hook["allowed_updates"], "a draft's stop button is heard"
        assert not any(call.method == "getUpdates" for call in fake.calls), "no polling in webhook mode"
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as health:
            assert health.status == 200

        update = message(fake, 5, "/help")
        assert await post(port, update) == 200
        assert (await fake.wait_for("sendMessage", is_to(5)))["text"] == texts.HELP
        assert await post(port, update) == 200, "Telegram retrying a post"
        # Turned away before the 200 went out, so it can't be answered later either.
        assert f"update {update['update_id']} was posted again" in bot.log
        for secret in (None, "wrong"):
            assert await post(port, message(fake, 6, "/help"), secret) in (401, 403)
        chat = message(fake, 7, "привет")
        assert await post(port, chat) == 200
        await fake.wait_for("sendMessage", is_to(7), timeout=30)
        fake.stop_generation(7, 99)
        assert await post(port, fake.updates.pop()) == 200, "a stop under a draft whose reply was sent already"
        assert len(fake.sent_messages(5)) == 1, "a re-posted update is answered once"
        assert fake.sent_messages(6) == [], "posts without the right secret are never handled"
        assert SECRET not in bot.log
        await stop_bot(bot)
        with closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as db:
            left = db.execute("SELECT update_id FROM inbox WHERE done_at IS NULL").fetchall()
        assert left == [], "nothing is left for the next start: the inbox keeps no stop presses"
    finally:
        bot.kill()


async def test_a_crash_in_webhook_mode_loses_no_message(
    fake: FakeTelegram, tmp_path: Path, slow_model_dir: Path, port: int
) -> None:
    settings = {**webhook_settings(port), "max_new_tokens": 80, "max_batch": 2}
    # Generation waits at a gate that is never opened: the kill finds every reply unsent, however fast the machine.
    bot = await start_bot(fake, tmp_path, slow_model_dir, gate=tmp_path / "gate", **settings)
    try:
        updates = [message(fake, chat, "расскажи что-нибудь") for chat in (11, 12, 13, 14)]
        for update in updates:
            assert await post(port, update) == 200
        await bot.wait_until_held()
        bot.signal(signal.SIGKILL)
        await bot.wait(30)
    finally:
        bot.kill()
    assert [len(fake.sent_messages(chat)) for chat in (11, 12, 13, 14)] == [0, 0, 0, 0]
    restarted: BotProcess = await start_bot(fake, tmp_path, slow_model_dir, **settings)
    try:
        # Recovery ran before the server listened; a post Telegram sends again is turned away before its 200.
        for update in updates:
            assert await post(port, update) == 200
            assert f"update {update['update_id']} was posted again" in restarted.log
        for chat in (11, 12, 13, 14):
            await fake.wait_for("sendMessage", is_to(chat), timeout=120)
        assert [len(fake.sent_messages(chat)) for chat in (11, 12, 13, 14)] == [1, 1, 1, 1]
        await stop_bot(restarted)
    finally:
        restarted.kill()


async def test_sigterm_in_webhook_mode_finishes_the_replies_in_flight(
    fake: FakeTelegram, tmp_path: Path, slow_model_dir: Path, port: int
) -> None:
    gate = tmp_path / "gate"
    bot = await start_bot(fake, tmp_path, slow_model_dir, gate=gate, **webhook_settings(port), max_new_tokens=80)
    try:
        assert await post(port, message(fake, 21, "расскажи что-нибудь")) == 200
        await bot.wait_until_held()
        bot.signal(signal.SIGTERM)
        await bot.wait_for_log(STOPPING)
        gate.touch()  # the reply can be finished only now that the bot is stopping
        assert await bot.wait(60) == 0, bot.log
        [reply] = fake.sent_messages(21)
        assert reply["text"] not in (texts.ERROR, texts.BUSY, texts.TIMEOUT)
        assert fake.sent_messages()[-1]["text"] == texts.ADMIN_STOPPING
    finally:
        bot.kill()
