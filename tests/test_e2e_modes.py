"""Toasts and horoscopes end to end: the real ``python main.py`` against the fake Bot API."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Callable
from pathlib import Path

from botprocess import ADMIN, is_to, start_bot, stop_bot
from fake_telegram import FakeTelegram

import texts
import train

GROUP = -100777


def first_line(params: dict) -> str:
    return params["text"].split("\n")[0]


async def answer_to(fake: FakeTelegram, chat: int, action: Callable[[], object]) -> dict:
    """Do ``action`` (a user's message or press) and return the bot's next message to the chat."""
    since = len(fake.calls)
    action()
    return await fake.wait_for("sendMessage", is_to(chat), since=since, timeout=30)


async def test_toasts_and_horoscopes_from_buttons_commands_and_more(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    settings = {"toast_max_new_tokens": 20, "horoscope_max_new_tokens": 20}
    bot = await start_bot(fake, tmp_path, tiny_model_dir, **settings)
    try:
        notice = fake.sent_messages(ADMIN)[0]["text"]
        assert f"toast: {tiny_model_dir}" in notice and f"horoscope: {tiny_model_dir}" in notice
        menu = {command["command"] for scope in fake.commands.values() for command in scope}
        assert {"toast", "horoscope"} <= menu

        def say(text: str) -> Callable[[], int]:
            return lambda: fake.send_text(5, text)

        def press(label: str) -> Callable[[], str]:
            return lambda: fake.press(5, label)

        assert (await answer_to(fake, 5, say("/toast")))["text"] == texts.TOAST_MENU
        labels = [b["text"] for row in fake.bot_messages(5)[-1]["reply_markup"]["inline_keyboard"] for b in row]
        holidays = ["Новый год 🎄", "День рождения 🎂", "23 февраля 🪖", "8 марта 🌷", "Свадьба 💍"]
        assert labels == [*holidays, texts.OTHER_HOLIDAY]

        pressed = len(fake.calls)
        toast = await answer_to(fake, 5, press("День рождения 🎂"))
        assert first_line(toast) == "🥂 День рождения" and toast["text"].split("\n\n", 1)[1].strip()
        assert any(c.method == "answerCallbackQuery" for c in fake.calls[pressed:])
        assert any(c.method == "sendChatAction" and is_to(5)(c.params) for c in fake.calls[pressed:])
        assert first_line(await answer_to(fake, 5, press(texts.MORE_BUTTON))) == "🥂 День рождения"

        assert (await answer_to(fake, 5, say("/toast")))["text"] == texts.TOAST_MENU
        assert (await answer_to(fake, 5, press(texts.OTHER_HOLIDAY)))["text"] == texts.ASK_HOLIDAY
        # A redeploy between the question and its answer: the question is still asked.
        await stop_bot(bot)
        bot = await start_bot(fake, tmp_path, tiny_model_dir, **settings)
        assert first_line(await answer_to(fake, 5, say("День космонавтики"))) == "🥂 День космонавтики"
        assert first_line(await answer_to(fake, 5, say("/toast Новый год"))) == "🥂 Новый год"

        assert (await answer_to(fake, 5, say("/horoscope")))["text"] == texts.HOROSCOPE_MENU
        assert first_line(await answer_to(fake, 5, press("♍ Дева"))) == "♍ Дева"
        assert first_line(await answer_to(fake, 5, press(texts.MORE_BUTTON))) == "♍ Дева"
        for command, title in (
            ("/horoscope ЛЕВ", "♌ Лев"),
            ("/generate рыбы", "♓ Рыбы"),
            ("/horoscope aries", "♈ Овен"),
        ):
            assert first_line(await answer_to(fake, 5, say(command))) == title

        asked = len(fake.calls)
        unknown = await answer_to(fake, 5, say("/horoscope котопёс"))
        assert unknown["text"].startswith(texts.UNKNOWN_SIGN.split("{")[0])
        assert not any(c.method == "sendChatAction" for c in fake.calls[asked:]), "no generation for a bad sign"

        message_id = 0

        def in_group() -> None:
            nonlocal message_id
            message_id = fake.send_text(GROUP, "/toast@test_bot Свадьба", chat_type="supergroup", user_id=11)

        group_toast = await answer_to(fake, GROUP, in_group)
        assert first_line(group_toast) == "🥂 Свадьба"
        replied_to = group_toast.get("reply_to_message_id") or group_toast.get("reply_parameters", {}).get("message_id")
        assert replied_to == message_id

        def other_bots_then_help() -> None:
            fake.send_text(GROUP, "/toast@other_bot Свадьба", chat_type="supergroup", user_id=11)
            fake.send_text(GROUP, "/help@test_bot", chat_type="supergroup", user_id=11)

        assert (await answer_to(fake, GROUP, other_bots_then_help))["text"] == texts.HELP

        await stop_bot(bot)
    finally:
        bot.kill()
    db = sqlite3.connect(tmp_path / "bot.sqlite3")
    try:
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0, "toasts and horoscopes are not dialogue"
    finally:
        db.close()


async def test_a_toast_model_from_train_py_does_toasts_while_chat_keeps_its_model(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = tmp_path / "toasts.csv"
    with data.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["topic", "text"])
        for holiday in ("Новый год", "День рождения", "Свадьба"):
            writer.writerows((holiday, toast) for toast in ("За счастье!", "За любовь и здоровье!", "До дна!"))
    toast_model = tmp_path / "toast_model"
    shape = ["--vocab-size", "300", "--n-embd", "32", "--n-layer", "2", "--n-head", "2", "--n-positions", "256"]
    argv = ["--data", str(data), "--task", "toast", "--out", str(toast_model), "--from-scratch", "--max-steps", "5"]
    assert train.main([*argv, *shape, "--no-progress"]) == 0

    bot = await start_bot(fake, tmp_path, tiny_model_dir, toast_model_path=toast_model)
    try:
        notice = fake.sent_messages(ADMIN)[-1]["text"]
        assert f"toast: {toast_model} (" in notice
        assert f"chat: {tiny_model_dir} (" in notice and f"horoscope: {tiny_model_dir} (" in notice
        assert first_line(await answer_to(fake, 5, lambda: fake.send_text(5, "/toast Новый год"))) == "🥂 Новый год"
        chat = await answer_to(fake, 5, lambda: fake.send_text(5, "привет"))
        assert chat["text"] and chat["text"] != texts.ERROR
        await stop_bot(bot)
    finally:
        bot.kill()
