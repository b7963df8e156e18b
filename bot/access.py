"""Who the bot answers: the allow-list, group addressing (mention, reply, trigger word), joining in, admins."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.enums import ChatMemberStatus, ChatType, MessageEntityType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import BaseFilter
from aiogram.types import CallbackQuery, Message, TelegramObject

import texts
from settings import Settings
from store import ChatStore

logger = logging.getLogger(__name__)

_LEADING_PUNCTUATION = re.compile(r"^[\s,.:;!?—–-]+")


def is_private(message: Message) -> bool:
    """Whether the message comes from a one-to-one chat with the bot."""
    return message.chat.type == ChatType.PRIVATE


class AllowList(BaseMiddleware):
    """Outer middleware: when ALLOWED_USERS/ALLOWED_CHATS are set, everyone else gets one polite refusal."""

    def __init__(self, users: tuple[int, ...], chats: tuple[int, ...]) -> None:
        self._users = set(users)
        self._chats = set(chats)

    def allows(self, user_id: int | None, chat_id: int | None) -> bool:
        """Whether this user or chat may talk to the bot."""
        if not self._users and not self._chats:
            return True
        return user_id in self._users or chat_id in self._chats

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        """Pass allowed events on; answer the others with a refusal and stop there."""
        user = data.get("event_from_user")
        chat = data.get("event_chat")
        if self.allows(user.id if user else None, chat.id if chat else None):
            return await handler(event, data)
        if isinstance(event, Message) and (
            is_private(event) or await AddressedToBot.check(event, data["bot"], data["settings"].trigger_word)
        ):
            await event.answer(texts.NOT_ALLOWED)
        elif isinstance(event, CallbackQuery):
            await event.answer(texts.NOT_ALLOWED, show_alert=True)
        return None


class AddressedToBot(BaseFilter):
    """Passes private messages and group messages addressed to the bot, handing on the ``prompt``.

    A group message is addressed to the bot when it mentions it, replies to it or starts with the
    trigger word; the prompt is its text without the mention or the trigger word.
    """

    async def __call__(self, message: Message, bot: Bot, settings: Settings) -> bool | dict[str, str]:
        """Decide whether the bot was addressed, and what was said to it."""
        text = message.text or ""
        if is_private(message):
            return {"prompt": text}
        prompt = await self.check(message, bot, settings.trigger_word)
        return False if prompt is None else {"prompt": prompt}

    @staticmethod
    async def check(message: Message, bot: Bot, trigger_word: str) -> str | None:
        """The text addressed to the bot in a group message, or None when the bot wasn't addressed."""
        text = message.text or ""
        me = await bot.me()
        mention = f"@{me.username}".lower() if me.username else None
        for entity in message.entities or ():
            if entity.type == MessageEntityType.MENTION and mention:
                said = entity.extract_from(text)
                if said.lower() == mention:
                    return (text.replace(said, " ", 1)).strip()
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
            return text
        if trigger_word:
            match = re.match(rf"{re.escape(trigger_word)}(?=$|[\s,.:;!?—–-])", text, flags=re.IGNORECASE)
            if match:
                return _LEADING_PUNCTUATION.sub("", text[match.end() :])
        return None


def from_a_person(message: Message) -> bool:
    """Whether a person wrote the message, not another bot nor a channel; an anonymous admin writes as the group."""
    if message.sender_chat is not None:
        return message.sender_chat.id == message.chat.id
    return message.from_user is not None and not message.from_user.is_bot


class JoinsIn(BaseFilter):
    """Passes a person's text in a group whose reply chance is above 0, handing on ``reply_chance`` and ``unprompted``.

    Registered after the handlers of addressed messages and commands, so what reaches it was said to the
    group, not to the bot. Media and other bots' messages never pass. ``unprompted`` tells
    bot.middlewares.ChatOrder that nobody asked for an answer.
    """

    async def __call__(self, message: Message, settings: Settings, store: ChatStore) -> bool | dict[str, Any]:
        """The group's reply chance, when the bot may join in on this message."""
        text = message.text or ""
        if is_private(message) or not text or text.startswith("/") or not from_a_person(message):
            return False
        chance = settings.reply_chance_for(store.preferences(message.chat.id))
        return {"reply_chance": chance, "unprompted": True} if chance > 0 else False


async def expects_answer(message: Message, bot: Bot, trigger_word: str) -> bool:
    """Whether the sender waits for the bot's answer: in a private chat, to a command, or when addressed in a group.

    A group's other talk, which the bot may only overhear, waits for nothing.
    """
    if is_private(message) or (message.text or "").startswith("/"):
        return True
    return await AddressedToBot.check(message, bot, trigger_word) is not None


async def sees_group_talk(bot: Bot, chat_id: int) -> bool:
    """Whether Telegram shows the bot every message of a group: its privacy mode is off, or it is an admin there.

    With privacy mode on, a bot gets only commands, mentions and replies to its own messages. A group the bot
    joined before privacy mode was turned off stays as it was until the bot is added again, which no call tells.
    """
    me = await bot.get_me()
    if me.can_read_all_group_messages:
        return True
    try:
        member = await bot.get_chat_member(chat_id, me.id)
    except TelegramAPIError as error:
        logger.warning("could not check the bot's rights in chat %s: %s", chat_id, error)
        return True  # unknown: better no advice than a wrong one
    return member.status in (ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR)


async def may_change_settings(bot: Bot, chat_id: int, user_id: int, private: bool) -> bool:
    """Anyone may change a private chat's settings; in a group only its administrators."""
    if private:
        return True
    try:
        member = await bot.get_chat_member(chat_id, user_id)
    except TelegramAPIError as error:
        logger.warning("could not check %s's rights in chat %s: %s", user_id, chat_id, error)
        return False
    return member.status in (ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR)
