"""Telegram handlers: commands, free-text chat and the answers to everything else.

Nothing here imports torch: the generator arrives through the dispatcher's workflow data.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Protocol

from aiogram import Bot, F, Router
from aiogram.enums import ChatAction, ChatType
from aiogram.exceptions import TelegramForbiddenError
from aiogram.filters import Command, CommandObject, CommandStart, ExceptionTypeFilter
from aiogram.types import ErrorEvent, Message
from aiogram.utils.chat_action import ChatActionSender

import texts
from bot.access import AddressedToBot, JoinsIn, expects_answer, is_private
from bot.commands import create_commands_router
from bot.daily import create_daily_router
from bot.drafts import Censors, Drafts, create_drafts_router, draft_censor
from bot.feedback import OFF, create_feedback_router, with_votes
from bot.feedback_store import FeedbackStore
from bot.middlewares import ChatOrder
from bot.modes import LeaveFormOnCommand, create_modes_router
from bot.notify import AdminNotifier
from bot.replies import send_plain
from bot.stats import BotStats
from errors import BusyError, ChatFloodError, EmptyMessageError, ReplyTimeoutError
from inference.progress import ReplyProgress
from settings import Settings
from store import ChatReply

logger = logging.getLogger(__name__)


class Replier(Censors, Protocol):
    """What the handlers need of the generator."""

    async def reply(self, chat_id: int, text: str, author: str, progress: ReplyProgress | None = None) -> ChatReply:
        """The model's reply ("" when it had none) and the turns to remember once it is sent."""
        ...

    def remember(self, chat_id: int, reply: ChatReply) -> None:
        """Add a delivered reply to the chat's history."""
        ...

    def overhear(self, chat_id: int, text: str, author: str) -> None:
        """Keep a message the bot did not answer as a turn of the chat's history."""
        ...

    def forget(self, chat_id: int) -> None: ...


async def start(message: Message, generator: Replier) -> None:
    """Greet the user and start the dialogue afresh."""
    generator.forget(message.chat.id)
    await send_plain(message, texts.GREETING)


async def show_help(message: Message) -> None:
    """List the commands."""
    await send_plain(message, texts.HELP)


async def reset(message: Message, generator: Replier) -> None:
    """Clear this chat's dialogue history."""
    generator.forget(message.chat.id)
    await send_plain(message, texts.HISTORY_CLEARED)


async def unknown_command(message: Message, command: CommandObject, bot: Bot) -> None:
    """Point to /help for commands this bot doesn't know; stay quiet about other bots' commands."""
    me = await bot.me()
    addressed_to_me = command.mention is not None and command.mention.lower() == (me.username or "").lower()
    # In a group a command without a mention may be meant for another bot there.
    if addressed_to_me or (command.mention is None and is_private(message)):
        await send_plain(message, texts.UNKNOWN_COMMAND)


def _author(message: Message) -> str:
    """Who said a message, as the history keeps it: the sender's user id (the chat's, when it has no sender)."""
    return str(message.from_user.id) if message.from_user else str(message.chat.id)


async def respond(
    message: Message,
    prompt: str,
    bot: Bot,
    generator: Replier,
    stats: BotStats,
    settings: Settings,
    feedback: FeedbackStore,
    drafts: Drafts,
    *,
    fallback: str | None = texts.FALLBACK_REPLY,
) -> bool:
    """Answer with the model's reply to ``prompt``, showing "typing…" (in private chats drafts) while it is written.

    When the model has nothing to say, ``fallback`` is said instead (a note, if the user stopped it before a
    word); with None nothing is sent (False). True once sent.
    """
    started = time.monotonic()
    async with (
        drafts.show(bot, message, draft_censor(generator, message.chat.id)) as progress,
        ChatActionSender(bot=bot, chat_id=message.chat.id, action=ChatAction.TYPING),
    ):
        reply = await generator.reply(message.chat.id, prompt, _author(message), progress)
    if not reply.text and fallback is None:
        return False
    votes = with_votes(feedback, message.chat.id, reply) if reply.text and settings.feedback != OFF else None
    await send_plain(message, reply.text or (texts.STOPPED_EMPTY if reply.stopped else fallback), reply_markup=votes)
    generator.remember(message.chat.id, reply)
    stats.record_reply(message.chat.id, time.monotonic() - started)
    return True


async def chat(
    message: Message,
    prompt: str,
    bot: Bot,
    generator: Replier,
    stats: BotStats,
    settings: Settings,
    feedback: FeedbackStore,
    drafts: Drafts,
) -> None:
    """Answer free text with the model's reply, showing "typing…" (and in private chats drafts) while it is written."""
    await respond(message, prompt, bot, generator, stats, settings, feedback, drafts)


async def join_in(
    message: Message,
    reply_chance: float,
    dice: random.Random,
    bot: Bot,
    generator: Replier,
    stats: BotStats,
    settings: Settings,
    feedback: FeedbackStore,
    drafts: Drafts,
) -> None:
    """A group's message nobody addressed to the bot: answered (as a reply) with the group's chance, else kept.

    Nobody asked for this answer, so nothing is said when none comes: with the pool busy (counted in /stats),
    past the time limit, or when the model has nothing to say, the message is kept as a turn of the
    group's history like the ones not chosen, so a later prompt still holds what was said.
    """
    text = message.text or ""
    if dice.random() < reply_chance:
        try:
            if await respond(message, text, bot, generator, stats, settings, feedback, drafts, fallback=None):
                stats.record_unprompted()
                return
        except BusyError:
            stats.record_unprompted_skipped()
        except ReplyTimeoutError as error:
            logger.warning("%s; it was an unprompted answer, so nothing is said", error)
        except EmptyMessageError:
            return  # nothing readable to keep either
    generator.overhear(message.chat.id, text, _author(message))


async def not_text(message: Message) -> None:
    """Answer stickers, photos, voice and other non-text messages politely."""
    await send_plain(message, texts.NOT_TEXT)


async def on_empty(event: ErrorEvent) -> None:
    """Answer a message that had no readable text left."""
    await _answer_update(event, texts.EMPTY_TEXT)


async def on_flood(event: ErrorEvent) -> None:
    """Answer a message sent while this chat's earlier ones still wait for replies."""
    await _answer_update(event, texts.SLOW_DOWN)


async def on_busy(event: ErrorEvent) -> None:
    """Answer at once when the generation queue is full."""
    await _answer_update(event, texts.BUSY)


async def on_timeout(event: ErrorEvent) -> None:
    """Apologise for a generation that ran past its time limit."""
    logger.warning("%s", event.exception)
    await _answer_update(event, texts.TIMEOUT)


async def on_blocked(event: ErrorEvent) -> None:
    """Drop answers to users who blocked the bot."""
    logger.info("not delivered: %s", event.exception)


async def on_error(event: ErrorEvent, admins: AdminNotifier, stats: BotStats, bot: Bot, settings: Settings) -> None:
    """Log the traceback, alert the admins (rate-limited) and apologise, unless nobody asked the bot anything."""
    stats.record_error()
    logger.error("error while handling update %s", event.update.update_id, exc_info=event.exception)
    await admins.alert(f"{type(event.exception).__name__}: {event.exception}")
    message = event.update.message
    if message is not None and not await expects_answer(message, bot, settings.trigger_word):
        return  # an unprompted answer to a group's talk failed: an apology would answer what nobody said to the bot
    await _answer_update(event, texts.ERROR)


async def _answer_update(event: ErrorEvent, text: str) -> None:
    """Say ``text`` where the failed update came from: a message, or the chat of a pressed button."""
    if event.update.message is not None:
        await send_plain(event.update.message, text)
        return
    query = event.update.callback_query
    if query is not None and isinstance(query.message, Message):
        # Stops the button's spinner; if the handler answered the press already, bot.retry.IgnoreExpiredPresses
        # takes Telegram's refusal of a second answer.
        await query.answer()
        await send_plain(query.message, text)


def create_router(order: ChatOrder) -> Router:
    """A router with every handler of the bot, its generating ones kept in each chat's order by ``order``."""
    router = Router(name="chat")
    # Outer, so that it sees every message, including the commands this router answers itself.
    router.message.outer_middleware(LeaveFormOnCommand())
    router.message.register(start, CommandStart())
    router.message.register(show_help, Command("help"))
    router.message.register(reset, Command("reset", "delete_history"))
    router.include_router(create_commands_router())
    router.include_router(create_daily_router())
    router.include_router(create_feedback_router())
    router.include_router(create_drafts_router())
    # One order for a chat's messages and button presses that generate, so their answers can't overtake each other.
    modes_router = create_modes_router()
    modes_router.message.middleware(order)
    modes_router.callback_query.middleware(order)
    router.include_router(modes_router)
    chat_router = Router(name="free text")
    chat_router.message.middleware(order)
    chat_router.message.register(unknown_command, Command(re.compile(r"^\w+$"), ignore_mention=True))
    chat_router.message.register(chat, F.text, AddressedToBot())
    # The rest of a group's talk: kept and now and then answered where the group's reply chance allows.
    chat_router.message.register(join_in, F.text, JoinsIn())
    chat_router.message.register(not_text, ~F.text, F.chat.type == ChatType.PRIVATE)
    router.include_router(chat_router)

    router.errors.register(on_empty, ExceptionTypeFilter(EmptyMessageError))
    router.errors.register(on_flood, ExceptionTypeFilter(ChatFloodError))
    router.errors.register(on_busy, ExceptionTypeFilter(BusyError))
    router.errors.register(on_timeout, ExceptionTypeFilter(ReplyTimeoutError))
    router.errors.register(on_blocked, ExceptionTypeFilter(TelegramForbiddenError))
    router.errors.register(on_error)
    return router
