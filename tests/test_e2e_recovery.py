"""A crash loses no message: the real process killed mid-generation answers every message once after a restart.

The first process runs with its generation held at a gate (tests/gated_main.py) that the test never opens, so
every reply is still being generated, or waiting for the model, when the process stops, however fast the machine.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from botprocess import ADMIN, BotProcess, is_to, start_bot, stop_bot
from fake_telegram import FakeTelegram

import texts

CHATS = list(range(300, 312))
ORDERED_CHAT = 400
TOAST_CHAT = 450
SLOW = {"max_new_tokens": 80, "toast_max_new_tokens": 40, "max_batch": 4}


def answers(fake: FakeTelegram, chat: int) -> list[dict]:
    return [params for params in fake.sent_messages(chat) if params["text"] != texts.BUSY]


def replied_to(params: dict) -> int | None:
    return (params.get("reply_parameters") or {}).get("message_id") or params.get("reply_to_message_id")


async def kept_updates(database: Path, count: int, timeout: float = 60) -> None:
    """Wait until the bot's inbox holds ``count`` updates not yet done."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        db = sqlite3.connect(database)
        try:
            kept = db.execute("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL").fetchone()[0]
        except sqlite3.OperationalError:  # the bot has not made its tables yet
            kept = 0
        finally:
            db.close()
        if kept >= count:
            return
        assert asyncio.get_running_loop().time() < deadline, f"the inbox holds {kept} of {count} updates"
        await asyncio.sleep(0.05)


async def send_and_interrupt(
    fake: FakeTelegram, bot: BotProcess, database: Path, interrupt: signal.Signals
) -> dict[int, list[int]]:
    """Twelve chats write once, one three times, one asks for a toast; all kept and one batch generating, it stops."""
    sent = {chat: [fake.send_text(chat, "расскажи что-нибудь длинное")] for chat in CHATS}
    sent[ORDERED_CHAT] = [fake.send_text(ORDERED_CHAT, f"сообщение {n}") for n in range(3)]
    sent[TOAST_CHAT] = [fake.send_text(TOAST_CHAT, "/toast Новый год")]
    await kept_updates(database, sum(map(len, sent.values())))
    await bot.wait_until_held()
    bot.signal(interrupt)
    await bot.wait(60)
    return sent


async def restart_and_check(fake: FakeTelegram, tmp_path: Path, model_dir: Path, sent: dict[int, list[int]]) -> None:
    """After the restart every message has exactly one answer, replies after the restart name their message."""
    assert not any(answers(fake, chat) for chat in sent), "nothing could be answered past the closed gate"
    # Telegram delivers again what it never saw confirmed; here: everything, to make the point.
    redelivered = [update_id for update_id, update in fake.delivered.items() if "message" in update]
    fake.redeliver(redelivered)
    bot = await start_bot(fake, tmp_path, model_dir, **SLOW)
    try:
        for chat, message_ids in sent.items():
            await fake.wait_for_count("sendMessage", len(message_ids), is_to(chat), timeout=120)
        # Each delivery of an update answered already is turned away, and says so; then no answer is left to come.
        await bot.wait_for_log("was delivered again", len(redelivered))
        for chat, message_ids in sent.items():
            got = answers(fake, chat)
            assert len(got) == len(message_ids), f"chat {chat}: {len(got)} answers to {len(message_ids)} messages"
            assert [replied_to(answer) for answer in got] == message_ids
        assert answers(fake, TOAST_CHAT)[0]["text"].startswith("🥂 Новый год"), "commands that generate too"
        fake.send_text(ADMIN, "/stats")
        report = await fake.wait_for("sendMessage", lambda p: is_to(ADMIN)(p) and "Отвечено" in p["text"])
        assert f"Отвечено после перезапуска: {sum(map(len, sent.values()))}" in report["text"]
        await stop_bot(bot)
    finally:
        bot.kill()


async def test_kill_9_while_generating_loses_no_message(
    fake: FakeTelegram, tmp_path: Path, slow_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, slow_model_dir, gate=tmp_path / "gate", **SLOW)
    try:
        sent = await send_and_interrupt(fake, bot, tmp_path / "bot.sqlite3", signal.SIGKILL)
    finally:
        bot.kill()
    await restart_and_check(fake, tmp_path, slow_model_dir, sent)


async def test_a_stop_past_the_shutdown_timeout_loses_no_message(
    fake: FakeTelegram, tmp_path: Path, slow_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, slow_model_dir, gate=tmp_path / "gate", shutdown_timeout=0.5, **SLOW)
    try:
        sent = await send_and_interrupt(fake, bot, tmp_path / "bot.sqlite3", signal.SIGTERM)
        assert bot.process.returncode == 0, bot.log
        assert "still running at shutdown" in bot.log
    finally:
        bot.kill()
    await restart_and_check(fake, tmp_path, slow_model_dir, sent)
