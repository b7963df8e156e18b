"""The bot's three jobs and the request turn that asks a model for a toast or a horoscope.

Pure functions shared by serving and training: the bot asks for a toast with the prompt
``@@ПЕРВЫЙ@@ Скажи тост: день рождения @@ВТОРОЙ@@``, and a toast model is trained on exactly that
request turn followed by the toast and the closing ``@@ПЕРВЫЙ@@``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

CHAT, TOAST, HOROSCOPE = "chat", "toast", "horoscope"
TASKS = (CHAT, TOAST, HOROSCOPE)

_REQUESTS = {
    TOAST: "Скажи тост: {topic}",
    HOROSCOPE: "Расскажи гороскоп на сегодня: {topic}",
}


def request_turn(task: str, topic: str) -> str:
    """The user's turn that asks for a text of ``task`` about ``topic`` (a holiday, a sign)."""
    return _REQUESTS[task].format(topic=" ".join(topic.split()).lower())


# A holiday's name longer than this is cut: it is a title, not a story.
MAX_HOLIDAY_NAME = 100

# The holidays people ask toasts for most, by key (callback data) and name (the request turn's topic).
HOLIDAYS = {
    "new_year": "Новый год",
    "birthday": "День рождения",
    "feb23": "23 февраля",
    "mar8": "8 марта",
    "wedding": "Свадьба",
}


@dataclass(frozen=True)
class Sign:
    """A zodiac sign: its key (the Latin name), symbol and Russian name."""

    key: str
    symbol: str
    name: str

    @property
    def label(self) -> str:
        """How buttons and messages show the sign: ``♌ Лев``."""
        return f"{self.symbol} {self.name}"


SIGNS = (
    Sign("aries", "♈", "Овен"),
    Sign("taurus", "♉", "Телец"),
    Sign("gemini", "♊", "Близнецы"),
    Sign("cancer", "♋", "Рак"),
    Sign("leo", "♌", "Лев"),
    Sign("virgo", "♍", "Дева"),
    Sign("libra", "♎", "Весы"),
    Sign("scorpio", "♏", "Скорпион"),
    Sign("sagittarius", "♐", "Стрелец"),
    Sign("capricorn", "♑", "Козерог"),
    Sign("aquarius", "♒", "Водолей"),
    Sign("pisces", "♓", "Рыбы"),
)


def _fold(text: str) -> str:
    # The variation selector lets "♌️" (emoji style) match "♌".
    return unicodedata.normalize("NFC", text).replace("\ufe0f", "").strip().lower().replace("ё", "е")


_SIGN_BY_WORD = {_fold(word): sign for sign in SIGNS for word in (sign.key, sign.symbol, sign.name)}


def parse_sign(text: str) -> Sign | None:
    """The sign a user named: its Russian or Latin name in any case (ё or е), or its symbol; None if none."""
    return _SIGN_BY_WORD.get(_fold(text))


def sign_list() -> str:
    """Every sign's label, comma-separated, for a message that lists them."""
    return ", ".join(sign.label for sign in SIGNS)


def sign_by_key(key: str) -> Sign | None:
    """The sign with this key (as stored in callback data and subscriptions)."""
    return next((sign for sign in SIGNS if sign.key == key), None)
