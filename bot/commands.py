"""Per-chat settings (/context, /settings), /forget and the admin's /stats."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

import texts
from bot.access import is_private, may_change_settings, sees_group_talk
from bot.feedback_store import FeedbackStore, Share
from bot.fsm_storage import SQLiteStorage
from bot.inbox import Inbox
from bot.stats import BotStats
from bot.subscriptions import Subscriptions
from inference.dialogue import MAX_CONTEXT_TURNS, parse_context_turns
from inference.profanity import MODES as PROFANITY_MODES
from inference.sampling import STYLES
from settings import Settings
from store import ChatPreferences, ChatStore

# The reply chances a group's administrators choose from in /settings (REPLY_CHANCE may set any other).
REPLY_CHANCES = (0.0, 0.05, 0.1, 0.25)


class SettingsChange(CallbackData, prefix="set"):
    """A press on a /settings button: which setting and its new value."""

    name: str
    value: str


class ForgetChoice(CallbackData, prefix="forget"):
    """A press on the /forget confirmation buttons."""

    confirmed: bool


def percent(chance: float) -> str:
    """A chance as people write it: 0.05 is ``5``, 0.125 is ``12.5``."""
    return f"{round(chance * 100, 1):g}"


def settings_view(
    preferences: ChatPreferences, settings: Settings, *, group: bool = False, sees_talk: bool = True
) -> tuple[str, InlineKeyboardMarkup]:
    """The /settings text and its buttons for a chat; a ``group`` also chooses how often the bot joins its talk.

    ``sees_talk`` False (the bot's privacy mode is on there) adds how to let the bot see the group's talk.
    """
    context_turns, style = settings.chat_choices(preferences)
    keyboard = InlineKeyboardBuilder()
    if context_turns > 1:
        less = SettingsChange(name="context", value=str(context_turns - 1))
        keyboard.button(text=texts.CONTEXT_LESS, callback_data=less)
    keyboard.button(text=texts.CONTEXT_BUTTON.format(turns=context_turns), callback_data="noop")
    if context_turns < MAX_CONTEXT_TURNS:
        more = SettingsChange(name="context", value=str(context_turns + 1))
        keyboard.button(text=texts.CONTEXT_MORE, callback_data=more)
    for name in STYLES:
        mark = texts.CHOSEN_MARK if name == style else ""
        keyboard.button(text=mark + texts.STYLE_NAMES[name], callback_data=SettingsChange(name="style", value=name))
    profanity = settings.profanity_for(preferences)
    for mode in PROFANITY_MODES:
        mark = texts.CHOSEN_MARK if mode == profanity else ""
        keyboard.button(
            text=mark + texts.PROFANITY_BUTTONS[mode], callback_data=SettingsChange(name="profanity", value=mode)
        )
    rows = [3 - (context_turns == 1) - (context_turns == MAX_CONTEXT_TURNS), len(STYLES), len(PROFANITY_MODES)]
    text = texts.SETTINGS.format(
        turns=context_turns, turns_word=texts.plural(context_turns, texts.TURNS_WORD), style=texts.STYLE_NAMES[style]
    ) + texts.PROFANITY_SETTING.format(profanity=texts.PROFANITY_NAMES[profanity])
    if group:
        chance = settings.reply_chance_for(preferences)
        for choice in REPLY_CHANCES:
            mark = texts.CHOSEN_MARK if choice == chance else ""
            label = mark + texts.REPLY_CHANCE_BUTTON.format(percent=percent(choice))
            keyboard.button(text=label, callback_data=SettingsChange(name="chance", value=str(choice)))
        rows.append(len(REPLY_CHANCES))
        shown = texts.REPLY_CHANCE_SHARE.format(percent=percent(chance)) if chance else texts.REPLY_CHANCE_NEVER
        text += texts.SETTINGS_REPLY_CHANCE.format(chance=shown)
        if chance and not sees_talk:
            text += texts.PRIVACY_MODE_ON
    keyboard.adjust(*rows)
    return text, keyboard.as_markup()


async def _view(
    message: Message, preferences: ChatPreferences, bot: Bot, settings: Settings
) -> tuple[str, InlineKeyboardMarkup]:
    """settings_view for the chat of ``message``; asks Telegram whether the bot sees a group's talk when it matters."""
    group = not is_private(message)
    sees_talk = not (group and settings.reply_chance_for(preferences)) or await sees_group_talk(bot, message.chat.id)
    return settings_view(preferences, settings, group=group, sees_talk=sees_talk)


async def _sender_may_change(message: Message, bot: Bot) -> bool:
    """Whether whoever sent this command may change the chat's settings.

    An anonymous group admin writes as the group itself (sender_chat); a message with no sender
    (a channel's) may change nothing.
    """
    if message.sender_chat is not None and message.sender_chat.id == message.chat.id:
        return True
    if message.from_user is None:
        return False
    return await may_change_settings(bot, message.chat.id, message.from_user.id, is_private(message))


async def set_context(message: Message, command: CommandObject, bot: Bot, store: ChatStore) -> None:
    """Set how many dialogue turns this chat's prompts hold."""
    turns = parse_context_turns(command.args or "")
    if turns is None:
        await message.answer(texts.CONTEXT_RANGE.format(maximum=MAX_CONTEXT_TURNS))
        return
    if not await _sender_may_change(message, bot):
        await message.answer(texts.ADMINS_ONLY)
        return
    store.set_preferences(message.chat.id, replace(store.preferences(message.chat.id), context_turns=turns))
    await message.answer(texts.CONTEXT_SET.format(turns=turns, turns_word=texts.plural(turns, texts.LAST_TURNS_WORD)))


async def show_settings(message: Message, bot: Bot, store: ChatStore, settings: Settings) -> None:
    """Show this chat's settings with buttons to change them."""
    text, keyboard = await _view(message, store.preferences(message.chat.id), bot, settings)
    await message.answer(text, reply_markup=keyboard)


async def _message_to_change(query: CallbackQuery, bot: Bot) -> Message | None:
    """The message under a pressed button, if the presser may change this chat; else explain and None."""
    message = query.message
    if not isinstance(message, Message):
        await query.answer(texts.SETTINGS_EXPIRED, show_alert=True)
        return None
    if not await may_change_settings(bot, message.chat.id, query.from_user.id, is_private(message)):
        await query.answer(texts.ADMINS_ONLY, show_alert=True)
        return None
    return message


async def change_setting(
    query: CallbackQuery, callback_data: SettingsChange, bot: Bot, store: ChatStore, settings: Settings
) -> None:
    """Apply a /settings button press (a group's admins only) and redraw the settings."""
    message = await _message_to_change(query, bot)
    if message is None:
        return
    preferences = store.preferences(message.chat.id)
    chances = {str(chance): chance for chance in REPLY_CHANCES}
    if callback_data.name == "context" and callback_data.value.isdigit():
        turns = min(max(int(callback_data.value), 1), MAX_CONTEXT_TURNS)
        preferences = replace(preferences, context_turns=turns)
    elif callback_data.name == "style" and callback_data.value in STYLES:
        preferences = replace(preferences, style=callback_data.value)
    elif callback_data.name == "chance" and callback_data.value in chances and not is_private(message):
        preferences = replace(preferences, reply_chance=chances[callback_data.value])
    elif callback_data.name == "profanity" and callback_data.value in PROFANITY_MODES:
        preferences = replace(preferences, profanity=callback_data.value)
    store.set_preferences(message.chat.id, preferences)
    text, keyboard = await _view(message, preferences, bot, settings)
    if text != message.text:
        await message.edit_text(text, reply_markup=keyboard)
    await query.answer(texts.SETTINGS_SAVED)


async def ask_to_forget(message: Message, bot: Bot) -> None:
    """Ask for confirmation before deleting everything stored about this chat."""
    if not await _sender_may_change(message, bot):
        await message.answer(texts.ADMINS_ONLY)
        return
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=texts.FORGET_YES, callback_data=ForgetChoice(confirmed=True))
    keyboard.button(text=texts.FORGET_NO, callback_data=ForgetChoice(confirmed=False))
    await message.answer(texts.FORGET_QUESTION, reply_markup=keyboard.as_markup())


async def forget(
    query: CallbackQuery,
    callback_data: ForgetChoice,
    bot: Bot,
    store: ChatStore,
    inbox: Inbox,
    subscriptions: Subscriptions,
    feedback: FeedbackStore,
    fsm_storage: SQLiteStorage,
) -> None:
    """Delete the chat's history and settings once confirmed (a group's admins only)."""
    message = await _message_to_change(query, bot)
    if message is None:
        return
    if callback_data.confirmed:
        store.forget_chat(message.chat.id)
        inbox.forget_chat(message.chat.id)
        subscriptions.cancel(message.chat.id)
        feedback.forget_chat(message.chat.id)
        fsm_storage.forget_chat(message.chat.id)
    await message.edit_text(texts.FORGOTTEN if callback_data.confirmed else texts.FORGET_CANCELLED)
    await query.answer()


async def ignore_label(query: CallbackQuery) -> None:
    """Acknowledge a press on a button that only shows a value."""
    await query.answer()


def _start_of_today() -> float:
    return datetime.combine(date.today(), datetime.min.time()).timestamp()


def _liked(share: Share) -> str:
    if not share.rated:
        return texts.NOT_RATED
    return texts.LIKED_SHARE.format(percent=round(100 * share.liked / share.rated), rated=share.rated)


async def show_stats(message: Message, settings: Settings, stats: BotStats, feedback: FeedbackStore) -> None:
    """Show the admin uptime, model, traffic, latency, queue and errors."""
    user_id = message.from_user.id if message.from_user else None
    if user_id not in settings.admin_chat_id and message.chat.id not in settings.admin_chat_id:
        await message.answer(texts.ADMIN_ONLY_COMMAND)
        return
    latency = stats.latency_percentiles()
    hours, rest = divmod(int(stats.uptime), 3600)
    await message.answer(
        texts.STATS.format(
            uptime=texts.UPTIME.format(hours=hours, minutes=rest // 60),
            model=stats.model_summary,
            chats=stats.chats_served,
            replies=stats.replies_today,
            unprompted=stats.unprompted,
            unprompted_skipped=stats.unprompted_skipped,
            latency=texts.LATENCY.format(p50=latency[0], p95=latency[1]) if latency else texts.NO_REPLIES_YET,
            queue=stats.queue_depth(),
            errors=stats.errors,
            recovered=stats.recovered,
            subscriptions=stats.subscription_count(),
            liked_today=_liked(feedback.share_liked(since=_start_of_today())),
            liked_overall=_liked(feedback.share_liked()),
        )
    )


def create_commands_router() -> Router:
    """Settings, privacy and admin commands, with their buttons."""
    router = Router(name="commands")
    router.message.register(set_context, Command("context", "set_context_length"))
    router.message.register(show_settings, Command("settings"))
    router.message.register(ask_to_forget, Command("forget"))
    router.message.register(show_stats, Command("stats"))
    router.callback_query.register(change_setting, SettingsChange.filter())
    router.callback_query.register(forget, ForgetChoice.filter())
    router.callback_query.register(ignore_label, F.data == "noop")
    return router
