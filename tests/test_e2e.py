"""End to end: the real ``python main.py`` process against a local fake Telegram Bot API server."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch
from botprocess import ADMIN, STOPPING, BotProcess, bot_env, is_to, main_command, start_bot, stop_bot
from fake_telegram import FakeTelegram

import texts


async def test_a_conversation_from_start_to_sigterm(
    fake: FakeTelegram, tmp_path: Path, answering_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, answering_model_dir)
    try:
        notice = fake.sent_messages(ADMIN)[0]["text"]
        assert str(answering_model_dir) in notice and ("cuda" if torch.cuda.is_available() else "cpu") in notice
        assert any(call.method == "setMyCommands" for call in fake.calls)

        fake.send_text(5, "/start")
        assert (await fake.wait_for("sendMessage", is_to(5)))["text"] == texts.GREETING
        since = len(fake.calls)
        fake.send_text(5, "привет, как дела?")
        reply = await fake.wait_for("sendMessage", is_to(5), since=since, timeout=30)
        assert reply["text"] and reply["text"] not in (texts.ERROR, texts.BUSY, texts.TIMEOUT, texts.FALLBACK_REPLY)
        assert "parse_mode" not in reply, "the model's text goes out as plain text"
        assert any(c.method == "sendChatAction" and is_to(5)(c.params) for c in fake.calls[since:])
        since = len(fake.calls)
        fake.send_sticker(5)
        assert (await fake.wait_for("sendMessage", is_to(5), since=since))["text"] == texts.NOT_TEXT

        await stop_bot(bot)
        assert fake.sent_messages(ADMIN)[-1]["text"] == texts.ADMIN_STOPPING
        assert fake.token not in bot.log and fake.token.split(":")[1] not in bot.log, "the token must never be logged"
    finally:
        bot.kill()


async def test_with_reply_chance_1_the_bot_joins_a_groups_talk(
    fake: FakeTelegram, tmp_path: Path, answering_model_dir: Path
) -> None:
    group = -100321
    bot = await start_bot(fake, tmp_path, answering_model_dir, reply_chance=1)
    try:
        said = [(11, "всем привет"), (22, "как дела?"), (11, "@test_bot а ты как?")]
        answers = []
        for user, text in said:
            since = len(fake.calls)
            mention = [{"type": "mention", "offset": 0, "length": 9}] if text.startswith("@test_bot") else []
            message_id = fake.send_text(group, text, user_id=user, chat_type="supergroup", entities=mention)
            answer = await fake.wait_for("sendMessage", is_to(group), since=since, timeout=30)
            assert answer["reply_parameters"]["message_id"] == message_id, "each answer replies to its message"
            assert answer["text"] not in (texts.ERROR, texts.BUSY, texts.FALLBACK_REPLY)
            answers.append(answer["text"])
        await stop_bot(bot)
        # The fake Bot API's bot reads only what is addressed to it: the log says how to change that.
        assert "privacy mode is on" in bot.log and "/setprivacy" in bot.log
    finally:
        bot.kill()
    db = sqlite3.connect(tmp_path / "bot.sqlite3")
    turns = db.execute("SELECT author, text FROM turns WHERE chat_id = ? ORDER BY id", (group,)).fetchall()
    db.close()
    spoken = [(str(user), text.removeprefix("@test_bot ")) for user, text in said]
    assert turns == [turn for pair in zip(spoken, [("bot", a) for a in answers], strict=True) for turn in pair]


async def test_failed_sends_are_retried_and_delivered_once(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, tiny_model_dir)
    try:
        fake.fail_next("sendMessage", 429, retry_after=1)
        fake.fail_next("sendMessage", 502)
        fake.fail_next("sendMessage", 0)
        fake.send_text(6, "/help")
        await fake.wait_for("sendMessage", is_to(6), timeout=30)
        failed = [c for c in fake.calls if c.method == "sendMessage" and c.failed]
        assert len(failed) == 3
        assert [m["text"] for m in fake.sent_messages(6)] == [texts.HELP]

        fake.fail_next("sendMessage", 403, description="Forbidden: bot was blocked by the user")
        fake.send_text(7, "/help")
        await fake.wait_for("sendMessage", is_to(7), include_failed=True)
        fake.send_text(8, "/help")
        await fake.wait_for("sendMessage", is_to(8))
        assert fake.sent_messages(7) == [], "a blocked user is not retried"
        assert "blocked" in bot.log
        await stop_bot(bot)
    finally:
        bot.kill()


async def test_polling_survives_the_bot_api_being_down(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, tiny_model_dir)
    try:
        fake.down(4)
        await asyncio.sleep(1)
        fake.send_text(9, "/help")
        assert (await fake.wait_for("sendMessage", is_to(9), timeout=30))["text"] == texts.HELP
        await stop_bot(bot)
    finally:
        bot.kill()


async def test_history_survives_a_restart_and_a_sigkill(
    fake: FakeTelegram, tmp_path: Path, answering_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, answering_model_dir)
    fake.send_text(10, "меня зовут Аня")
    await fake.wait_for("sendMessage", is_to(10), timeout=30)
    await stop_bot(bot)

    since = len(fake.calls)
    gate = tmp_path / "gate"
    gate.touch()
    bot = await start_bot(fake, tmp_path, answering_model_dir, gate=gate)
    fake.send_text(10, "как меня зовут?")
    await fake.wait_for("sendMessage", is_to(10), since=since, timeout=30)
    gate.unlink()
    fake.send_text(10, "а тебя?")
    await bot.wait_until_held()
    bot.kill()  # SIGKILL mid-generation

    db = sqlite3.connect(tmp_path / "bot.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    users = [text for (text,) in db.execute("SELECT text FROM turns WHERE chat_id = 10 AND author = '10' ORDER BY id")]
    db.close()
    # Each answered message is in the history; the one whose answer the kill cut off is not.
    assert users == ["меня зовут Аня", "как меня зовут?"]

    since = len(fake.calls)
    bot = await start_bot(fake, tmp_path, answering_model_dir)
    try:
        fake.send_text(10, "ещё раз привет")
        # The cut-off message is answered at the restart, then the new one.
        replies = await fake.wait_for_count("sendMessage", 2, is_to(10), since=since, timeout=30)
        assert all(reply["text"] not in (texts.ERROR, texts.FALLBACK_REPLY) for reply in replies)
        await stop_bot(bot)
    finally:
        bot.kill()
    db = sqlite3.connect(tmp_path / "bot.sqlite3")
    users = [text for (text,) in db.execute("SELECT text FROM turns WHERE chat_id = 10 AND author = '10' ORDER BY id")]
    db.close()
    assert users == ["меня зовут Аня", "как меня зовут?", "а тебя?", "ещё раз привет"]


async def test_overload_gets_busy_at_once_and_sigterm_finishes_in_flight_replies(
    fake: FakeTelegram, tmp_path: Path, slow_model_dir: Path
) -> None:
    gate = tmp_path / "gate"
    bot = await start_bot(fake, tmp_path, slow_model_dir, gate=gate, max_pending=2, max_new_tokens=120, max_batch=1)
    try:
        chats = list(range(100, 108))
        for chat in chats:
            fake.send_text(chat, "расскажи длинную историю")
        # The first reply waits at the gate, so two stay pending while the other six get "busy", before any reply.
        busy = await fake.wait_for_count("sendMessage", 6, lambda p: p["text"] == texts.BUSY, timeout=30)
        await bot.wait_until_held()
        generating = set(chats) - {int(p["chat_id"]) for p in busy}
        assert len(generating) == 2
        bot.signal(signal.SIGTERM)
        await bot.wait_for_log(STOPPING)
        gate.touch()  # the two replies can be finished only now that the bot is stopping
        assert await bot.wait(60) == 0, bot.log
        for chat in chats:
            assert len(fake.sent_messages(chat)) == 1, f"chat {chat} must get exactly one answer"
        for chat in generating:
            assert fake.sent_messages(chat)[0]["text"] not in (texts.BUSY, texts.ERROR, texts.TIMEOUT)
        assert fake.sent_messages(ADMIN)[-1]["text"] == texts.ADMIN_STOPPING
    finally:
        bot.kill()


@pytest.mark.slow
async def test_soak_every_message_gets_exactly_one_answer_in_order(
    fake: FakeTelegram, tmp_path: Path, answering_model_dir: Path
) -> None:
    chats, rounds = range(1, 51), 10
    bot = await start_bot(fake, tmp_path, answering_model_dir, max_pending=200)
    try:
        fake.fault_rate("sendMessage", 0.1, seed=7)

        async def talk(chat: int, first: int, last: int) -> None:
            for i in range(first, last, 2):
                # Two at a time, so the bot must keep one chat's replies in order itself.
                fake.send_text(chat, f"сообщение {i}")
                fake.send_text(chat, f"сообщение {i + 1}")
                await fake.wait_for_count("sendMessage", i + 2, is_to(chat), timeout=120)

        await asyncio.gather(*(talk(chat, 0, 4) for chat in chats))
        memory_warm = bot.rss_mb()
        await asyncio.gather(*(talk(chat, 4, rounds) for chat in chats))
        memory_end = bot.rss_mb()
        fake.fault_rate("sendMessage", 0)
        await stop_bot(bot)
    finally:
        bot.kill()

    assert sum(c.failed for c in fake.calls if c.method == "sendMessage") > 20, "faults were injected"
    db = sqlite3.connect(tmp_path / "bot.sqlite3")
    for chat in chats:
        answers = [m["text"] for m in fake.sent_messages(chat)]
        assert len(answers) == rounds, f"chat {chat}: {len(answers)} answers to {rounds} messages"
        turns = db.execute("SELECT author, text FROM turns WHERE chat_id = ? ORDER BY id", (chat,)).fetchall()
        # Each message and its answer are stored together, in sending order.
        expected = [
            turn for i, answer in enumerate(answers) for turn in ((str(chat), f"сообщение {i}"), ("bot", answer))
        ]
        assert turns == expected, f"chat {chat}: answers out of order"
    assert memory_end - memory_warm < 50, f"memory grew {memory_end - memory_warm:.0f} MiB during the soak"
    assert fake.token not in bot.log


async def test_a_rejected_token_stops_start_up_with_one_line(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    bot = BotProcess(
        tmp_path,
        bot_token="999:WRONG",
        telegram_api_base=fake.base_url,
        model_path=tiny_model_dir,
        db_path=tmp_path / "bot.sqlite3",
    )
    try:
        assert await bot.wait(120) == 2
        assert "Traceback" not in bot.log and "rejected BOT_TOKEN" in bot.log and "WRONG" not in bot.log
    finally:
        bot.kill()


# --- start-up without Telegram ------------------------------------------------------------------------------


def run_main(tmp_path: Path, *args: str, stdin: str | None = None, **settings: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        main_command(tmp_path, *args),
        cwd=tmp_path,
        env=bot_env(**settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_bad_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = run_main(tmp_path, bot_token="1:x", temperature="hot")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "TEMPERATURE" in line and "'hot'" in line


def test_a_missing_model_says_where_it_looked_and_how_to_get_one(tmp_path: Path) -> None:
    result = run_main(tmp_path, bot_token="1:x", model_path=tmp_path / "nowhere")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(tmp_path / "nowhere") in result.stderr and "train.py" in result.stderr


def test_a_damaged_database_stops_start_up_naming_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "broken.sqlite3").write_bytes(b"garbage" * 1000)
    result = run_main(tmp_path, bot_token="1:x", model_path=tiny_model_dir, db_path=tmp_path / "broken.sqlite3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "broken.sqlite3" in result.stderr


def test_without_a_token_it_says_how_to_set_one(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = run_main(tmp_path, model_path=tiny_model_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "BOT_TOKEN" in result.stderr and "--console" in result.stderr


def test_without_a_token_a_terminal_gets_the_console_chat(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The README's run command on a fresh clone: no token yet, so the model is shown in the terminal."""
    main_side, bot_side = pty.openpty()
    process = subprocess.Popen(
        main_command(tmp_path),
        cwd=tmp_path,
        stdin=bot_side,
        stdout=bot_side,
        stderr=subprocess.PIPE,
        env=bot_env(model_path=tiny_model_dir, db_path=tmp_path / "db.sqlite3"),
    )
    os.close(bot_side)
    os.write(main_side, "привет\n/exit\n".encode())
    output = b""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            output += os.read(main_side, 4096)
        except OSError:
            break
    process.wait(10)
    os.close(main_side)
    assert process.returncode == 0
    assert "BOT_TOKEN" in process.stderr.read().decode()
    assert "бот> " in output.decode(errors="replace")
