"""How the bot answers a message: plain text in Telegram-sized parts, as a reply where that helps."""

from __future__ import annotations

from typing import Any

from aiogram.types import Message, ReplyParameters

from bot.access import is_private
from bot.inbox import RECOVERING

TELEGRAM_TEXT_LIMIT = 4096


def split_text(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split a text into Telegram-sized parts, at a line break or space where one is near."""
    parts = []
    while len(text) > limit:
        cut = max(text.rfind("\n", 0, limit), text.rfind(" ", 0, limit))
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*parts, text] if text else parts


def reply_parameters(message: Message) -> ReplyParameters | None:
    """Reply to the message in groups (so everyone sees whom the bot answers) and when answering late.

    A message answered after a restart gets a reply too, so its sender sees which message it answers.
    Sent even if the message was deleted meanwhile.
    """
    if is_private(message) and not RECOVERING.get():
        return None
    return ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True)


async def send_plain(message: Message, text: str, **extra: Any) -> None:
    """Answer with plain text (the Bot's default is no parse mode, so model output can't break markup), split if long.

    ``extra`` (a keyboard, say) goes with the last part.
    """
    parts = split_text(text)
    for index, part in enumerate(parts):
        more = extra if index == len(parts) - 1 else {}
        await message.answer(part, reply_parameters=reply_parameters(message), **more)
