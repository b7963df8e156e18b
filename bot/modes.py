"""Toasts by holiday and horoscopes by sign: /toast, /horoscope (/generate), their buttons and "Ещё".

Texts come from the generator's ``compose`` through the same bounded pool as chat replies; they are
not turns of the chat's dialogue history.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from aiogram import BaseMiddleware, Bot, F, Router
from aiogram.enums import ChatAction
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, TelegramObject
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.keyboard import InlineKeyboardBuilder

import texts
from bot.buttons import More, composed_keyboard
from bot.drafts import Censors, Drafts
from bot.feedback import EVERYTHING, with_votes
from bot.feedback_store import FeedbackStore
from bot.replies import send_plain
from bot.stats import BotStats
from inference.modes import (
    HOLIDAYS,
    HOROSCOPE,
    MAX_HOLIDAY_NAME,
    SIGNS,
    TOAST,
    parse_sign,
    sign_by_key,
    sign_list,
)
from inference.progress import ReplyProgress
from store import ChatReply

_OTHER = "other"


class Composes(Censors, Protocol):
    """What these handlers need of the generator."""

    async def compose(
        self, task: str, topic: str, *, profanity: str | None = None, progress: ReplyProgress | None = None
    ) -> ChatReply:
        """A toast or horoscope about the topic (its text "" when the model had none), in the profanity mode given."""
        ...


class ToastChoice(CallbackData, prefix="toast"):
    """A press on a holiday button (a key of HOLIDAYS, or "other")."""

    holiday: str


class SignChoice(CallbackData, prefix="sign"):
    """A press on a zodiac sign button."""

    sign: str


class CancelForm(CallbackData, prefix="cancel"):
    """A press on the cancel button under the question for a holiday's name."""


class HolidayForm(StatesGroup):
    """Waiting for the name of a holiday after "Другой праздник…"."""

    name = State()


class LeaveFormOnCommand(BaseMiddleware):
    """Outer message middleware: a command other than /cancel leaves the question for a holiday's name."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        """Clear the question's state when a command arrives, then handle the message."""
        state: FSMContext | None = data.get("state")
        text = event.text if isinstance(event, Message) else None
        leaving = text is not None and text.startswith("/") and not text.startswith("/cancel")
        if leaving and state is not None and await state.get_state() == HolidayForm.name.state:
            await state.clear()
        return await handler(event, data)


def holiday_keyboard() -> InlineKeyboardMarkup:
    """The five holidays and "Другой праздник…"."""
    keyboard = InlineKeyboardBuilder()
    for key, name in HOLIDAYS.items():
        keyboard.button(text=f"{name} {texts.HOLIDAY_EMOJI[key]}", callback_data=ToastChoice(holiday=key))
    keyboard.button(text=texts.OTHER_HOLIDAY, callback_data=ToastChoice(holiday=_OTHER))
    keyboard.adjust(2)
    return keyboard.as_markup()


def sign_keyboard() -> InlineKeyboardMarkup:
    """The twelve signs, three to a row."""
    keyboard = InlineKeyboardBuilder()
    for sign in SIGNS:
        keyboard.button(text=sign.label, callback_data=SignChoice(sign=sign.key))
    keyboard.adjust(3)
    return keyboard.as_markup()


@dataclass(frozen=True)
class Composer:
    """Generates a toast or horoscope with "typing…" (and in private chats drafts) shown, and sends it titled."""

    generator: Composes
    stats: BotStats
    feedback: FeedbackStore
    feedback_mode: str
    drafts: Drafts

    async def send(self, message: Message, bot: Bot, task: str, topic: str) -> None:
        """Answer ``message`` with a text of ``task`` about ``topic`` (a holiday key or name, a sign key)."""
        started = time.monotonic()
        if task == TOAST:
            name = HOLIDAYS.get(topic, topic)
            title, fallback = texts.TOAST_TITLE.format(topic=name), texts.FALLBACK_TOAST
        else:
            sign = sign_by_key(topic)
            if sign is None:
                await unknown_sign(message)
                return
            name = sign.name
            title = texts.HOROSCOPE_TITLE.format(symbol=sign.symbol, name=sign.name)
            fallback = texts.FALLBACK_HOROSCOPE
        profanity = self.generator.profanity_mode(message.chat.id)
        censor = partial(self.generator.apply_profanity, mode=profanity, draft=True)
        async with (
            self.drafts.show(bot, message, censor) as progress,
            ChatActionSender(bot=bot, chat_id=message.chat.id, action=ChatAction.TYPING),
        ):
            composed = await self.generator.compose(task, name, profanity=profanity, progress=progress)
        keyboard = composed_keyboard(task, topic)
        if composed.text and self.feedback_mode == EVERYTHING:
            keyboard = with_votes(self.feedback, message.chat.id, composed, keyboard)
        fallback = texts.STOPPED_EMPTY if composed.stopped else fallback
        await send_plain(message, f"{title}\n\n{composed.text or fallback}", reply_markup=keyboard)
        self.stats.record_reply(message.chat.id, time.monotonic() - started)


async def unknown_sign(message: Message) -> None:
    """List the signs, with their buttons, for a sign the bot doesn't know (nothing is generated)."""
    await message.answer(texts.UNKNOWN_SIGN.format(signs=sign_list()), reply_markup=sign_keyboard())


async def toast(message: Message, command: CommandObject, bot: Bot, composer: Composer, state: FSMContext) -> None:
    """``/toast`` shows the holidays; ``/toast День космонавтики`` gives a toast at once."""
    await state.clear()
    if not (command.args or "").strip():
        await message.answer(texts.TOAST_MENU, reply_markup=holiday_keyboard())
        return
    await composer.send(message, bot, TOAST, command.args.strip()[:MAX_HOLIDAY_NAME])


async def horoscope(message: Message, command: CommandObject, bot: Bot, composer: Composer) -> None:
    """``/horoscope`` shows the signs; ``/horoscope лев`` gives a horoscope; an unknown sign lists them."""
    argument = (command.args or "").strip()
    if not argument:
        await message.answer(texts.HOROSCOPE_MENU, reply_markup=sign_keyboard())
        return
    sign = parse_sign(argument)
    if sign is None:
        await unknown_sign(message)
        return
    await composer.send(message, bot, HOROSCOPE, sign.key)


async def choose_holiday(
    query: CallbackQuery,
    callback_data: ToastChoice,
    bot: Bot,
    composer: Composer,
    state: FSMContext,
) -> None:
    """A holiday button gives a toast; "Другой праздник…" asks for the holiday's name."""
    await query.answer()
    if not isinstance(query.message, Message):
        return
    if callback_data.holiday == _OTHER or callback_data.holiday not in HOLIDAYS:
        await state.set_state(HolidayForm.name)
        keyboard = InlineKeyboardBuilder()
        keyboard.button(text=texts.CANCEL_BUTTON, callback_data=CancelForm())
        await query.message.answer(texts.ASK_HOLIDAY, reply_markup=keyboard.as_markup())
        return
    await composer.send(query.message, bot, TOAST, callback_data.holiday)


async def holiday_named(message: Message, bot: Bot, composer: Composer, state: FSMContext) -> None:
    """The message after "Другой праздник…" is the holiday's name."""
    await state.clear()
    await composer.send(message, bot, TOAST, (message.text or "").strip()[:MAX_HOLIDAY_NAME])


async def holiday_not_text(message: Message) -> None:
    """A sticker or photo where the holiday's name was expected."""
    await message.answer(texts.HOLIDAY_NOT_TEXT)


async def cancel(message: Message, state: FSMContext) -> None:
    """``/cancel`` leaves the question for a holiday's name."""
    if await state.get_state() is None:
        await message.answer(texts.NOTHING_TO_CANCEL)
        return
    await state.clear()
    await message.answer(texts.CANCELLED)


async def cancel_pressed(query: CallbackQuery, state: FSMContext) -> None:
    """The cancel button under the question for a holiday's name."""
    await state.clear()
    await query.answer(texts.CANCELLED)
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)


async def choose_sign(query: CallbackQuery, callback_data: SignChoice, bot: Bot, composer: Composer) -> None:
    """A sign button gives that sign's horoscope."""
    await query.answer()
    if isinstance(query.message, Message):
        await composer.send(query.message, bot, HOROSCOPE, callback_data.sign)


async def more(query: CallbackQuery, callback_data: More, bot: Bot, composer: Composer) -> None:
    """Give another toast or horoscope for the same holiday or sign ("Ещё")."""
    await query.answer()
    if isinstance(query.message, Message) and callback_data.task in (TOAST, HOROSCOPE):
        await composer.send(query.message, bot, callback_data.task, callback_data.topic)


def create_modes_router() -> Router:
    """/toast, /horoscope (and its alias /generate), /cancel, and their buttons."""
    router = Router(name="modes")
    router.message.register(cancel, Command("cancel"))
    router.message.register(toast, Command("toast"))
    router.message.register(horoscope, Command("horoscope", "generate"))
    router.message.register(holiday_named, StateFilter(HolidayForm.name), F.text)
    router.message.register(holiday_not_text, StateFilter(HolidayForm.name))
    router.callback_query.register(choose_holiday, ToastChoice.filter())
    router.callback_query.register(choose_sign, SignChoice.filter())
    router.callback_query.register(more, More.filter())
    router.callback_query.register(cancel_pressed, CancelForm.filter())
    return router
