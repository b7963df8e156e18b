"""A crash loses no message: the real process killed mid-generation answers every message once after a restart."""

from __future__ import annotations

import asyncio
import signal
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


async def send_and_interrupt(fake: FakeTelegram, bot: BotProcess, interrupt: signal.Signals) -> dict[int, list[int]]:
    """Twelve chats write once, one three times, one asks for a toast; once replies generate, the process stops."""
    sent = {chat: [fake.send_text(chat, "расскажи что-нибудь длинное")] for chat in CHATS}
    sent[ORDERED_CHAT] = [fake.send_text(ORDERED_CHAT, f"сообщение {n}") for n in range(3)]
    sent[TOAST_CHAT] = [fake.send_text(TOAST_CHAT, "/toast Новый год")]
    await fake.wait_for("sendChatAction", timeout=30)
    await asyncio.sleep(1)
    bot.signal(interrupt)
    await bot.wait(60)
    return sent


async def restart_and_check(fake: FakeTelegram, tmp_path: Path, model_dir: Path, sent: dict[int, list[int]]) -> None:
    """After the restart every message has exactly one answer, replies after the restart name their message."""
    answered_before = {chat: len(answers(fake, chat)) for chat in sent}
    assert sum(answered_before.values()) < sum(map(len, sent.values())), "the interruption left nothing to recover"
    # Telegram delivers again what it never saw confirmed; here: everything, to make the point.
    fake.redeliver([update_id for update_id, update in fake.delivered.items() if "message" in update])
    bot = await start_bot(fake, tmp_path, model_dir, **SLOW)
    try:
        for chat, message_ids in sent.items():
            await fake.wait_for_count("sendMessage", len(message_ids), is_to(chat), timeout=120)
        await asyncio.sleep(2)  # time for any duplicate to show up
        for chat, message_ids in sent.items():
            got = answers(fake, chat)
            assert len(got) == len(message_ids), f"chat {chat}: {len(got)} answers to {len(message_ids)} messages"
            late = got[answered_before[chat] :]
            assert [replied_to(answer) for answer in late] == message_ids[answered_before[chat] :]
        assert answers(fake, TOAST_CHAT)[0]["text"].startswith("🥂 Новый год"), "commands that generate too"
        fake.send_text(ADMIN, "/stats")
        report = await fake.wait_for("sendMessage", lambda p: is_to(ADMIN)(p) and "Отвечено" in p["text"])
        recovered = sum(len(ids) for ids in sent.values()) - sum(answered_before.values())
        assert f"Отвечено после перезапуска: {recovered}" in report["text"]
        await stop_bot(bot)
    finally:
        bot.kill()


async def test_kill_9_while_generating_loses_no_message(
    fake: FakeTelegram, tmp_path: Path, slow_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, slow_model_dir, **SLOW)
    try:
        sent = await send_and_interrupt(fake, bot, signal.SIGKILL)
    finally:
        bot.kill()
    await restart_and_check(fake, tmp_path, slow_model_dir, sent)


async def test_a_stop_past_the_shutdown_timeout_loses_no_message(
    fake: FakeTelegram, tmp_path: Path, slow_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, slow_model_dir, shutdown_timeout=0.5, **SLOW)
    try:
        sent = await send_and_interrupt(fake, bot, signal.SIGTERM)
        assert bot.process.returncode == 0, bot.log
        assert "still running at shutdown" in bot.log
    finally:
        bot.kill()
    await restart_and_check(fake, tmp_path, slow_model_dir, sent)
