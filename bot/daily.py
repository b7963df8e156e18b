"""/daily: subscribe a chat to a daily horoscope, show or cancel it; the "Присылать каждый день" button."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

import texts
from bot.access import is_private, may_change_settings
from bot.buttons import DailySubscribe, More
from bot.replies import send_plain
from bot.subscriptions import Subscription, Subscriptions
from inference.modes import HOROSCOPE, Sign, parse_sign, sign_by_key, sign_list
from settings import Settings, parse_time_of_day


def describe(subscription: Subscription, settings: Settings) -> str:
    """The subscription as the bot says it: sign and time."""
    sign = sign_by_key(subscription.sign)
    label = sign.label if sign else subscription.sign
    return texts.DAILY_SHOW.format(sign=label, time=subscription.at.strftime("%H:%M"), timezone=settings.timezone)


def _subscribe(chat_id: int, sign: Sign, at: time, subscriptions: Subscriptions, settings: Settings) -> str:
    local = datetime.now(ZoneInfo(settings.timezone))
    subscription = subscriptions.subscribe(chat_id, sign.key, at, local.date(), local.time())
    return texts.DAILY_SUBSCRIBED.format(sign=sign.label, time=at.strftime("%H:%M"), timezone=settings.timezone) + (
        texts.DAILY_FROM_TOMORROW if subscription.last_sent else ""
    )


async def daily(
    message: Message, command: CommandObject, bot: Bot, subscriptions: Subscriptions, settings: Settings
) -> None:
    """``/daily`` shows the subscription, ``/daily лев [08:30]`` subscribes, ``/daily off`` cancels."""
    words = (command.args or "").split()
    if not words:
        subscription = subscriptions.get(message.chat.id)
        await send_plain(message, describe(subscription, settings) if subscription else texts.DAILY_NONE)
        return
    user_id = message.from_user.id if message.from_user else None
    if not await may_change_settings(bot, message.chat.id, user_id, is_private(message)):
        await send_plain(message, texts.ADMINS_ONLY)
        return
    if len(words) == 1 and words[0].lower() in ("off", "stop", "выкл", "отписаться", "отмена"):
        cancelled = subscriptions.cancel(message.chat.id)
        await send_plain(message, texts.DAILY_CANCELLED if cancelled else texts.DAILY_NONE)
        return
    sign = parse_sign(words[0])
    at = parse_time_of_day(words[1]) if len(words) == 2 else settings.daily_time if len(words) == 1 else None
    if sign is None or at is None:
        usage = texts.DAILY_USAGE.format(signs=sign_list(), time=settings.daily_time.strftime("%H:%M"))
        await send_plain(message, usage)
        return
    await send_plain(message, _subscribe(message.chat.id, sign, at, subscriptions, settings))


async def subscribe_pressed(
    query: CallbackQuery, callback_data: DailySubscribe, bot: Bot, subscriptions: Subscriptions, settings: Settings
) -> None:
    """Subscribe the chat to the horoscope's sign at DAILY_TIME."""
    message = query.message
    sign = sign_by_key(callback_data.sign)
    if not isinstance(message, Message) or sign is None:
        await query.answer(texts.SETTINGS_EXPIRED, show_alert=True)
        return
    if not await may_change_settings(bot, message.chat.id, query.from_user.id, is_private(message)):
        await query.answer(texts.ADMINS_ONLY, show_alert=True)
        return
    await query.answer()
    await send_plain(message, _subscribe(message.chat.id, sign, settings.daily_time, subscriptions, settings))


def create_daily_router() -> Router:
    """/daily and its button."""
    router = Router(name="daily")
    router.message.register(daily, Command("daily"))
    router.callback_query.register(subscribe_pressed, DailySubscribe.filter())
    return router


async def send_daily(bot: Bot, subscription: Subscription, text: str, day: str) -> None:
    """Send a subscription its horoscope, titled with the sign and the day, with "Ещё" under it."""
    sign = sign_by_key(subscription.sign)
    if sign is None:
        return
    title = texts.DAILY_TITLE.format(symbol=sign.symbol, name=sign.name, day=day)
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=texts.MORE_BUTTON, callback_data=More(task=HOROSCOPE, topic=sign.key))
    await bot.send_message(subscription.chat_id, f"{title}\n\n{text}", reply_markup=keyboard.as_markup())
