"""Buttons under the bot's toasts and horoscopes: "Ещё" and "Присылать каждый день"."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

import texts
from inference.modes import HOROSCOPE

# Telegram's limit on a button's callback data, in bytes.
_CALLBACK_DATA_LIMIT = 64


class More(CallbackData, prefix="more"):
    """A press on "Ещё" under a toast (topic: a holiday key or its name) or a horoscope (topic: a sign key)."""

    task: str
    topic: str


class DailySubscribe(CallbackData, prefix="daily"):
    """A press on "Присылать каждый день" under a horoscope."""

    sign: str


def composed_keyboard(task: str, topic: str) -> InlineKeyboardMarkup:
    """The "Ещё" button, and under a horoscope "Присылать каждый день"; a custom holiday's name is cut to fit."""
    room = _CALLBACK_DATA_LIMIT - len(More(task=task, topic="").pack().encode())
    topic = topic.replace(More.__separator__, " ").encode()[:room].decode(errors="ignore").strip()
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=texts.MORE_BUTTON, callback_data=More(task=task, topic=topic))
    if task == HOROSCOPE:
        keyboard.button(text=texts.DAILY_BUTTON, callback_data=DailySubscribe(sign=topic))
    return keyboard.as_markup()
