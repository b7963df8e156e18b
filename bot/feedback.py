"""FEEDBACK: 👍/👎 under the bot's replies, one vote per user, kept for the next fine-tune."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

import texts
from bot.feedback_store import FeedbackStore, Tally
from store import ChatReply

# FEEDBACK's values: which texts get the buttons.
OFF, CHAT_REPLIES, EVERYTHING = "off", "on", "all"


class Vote(CallbackData, prefix="vote"):
    """A press on 👍 (rating 1) or 👎 (rating -1) under a reply."""

    reply_id: int
    rating: int


NO_VOTES = Tally(0, 0)


def vote_buttons(reply_id: int, tally: Tally = NO_VOTES) -> list[InlineKeyboardButton]:
    """👍 and 👎, with their counts once there are votes."""
    buttons = []
    for rating, mark, count in ((1, texts.LIKE, tally.up), (-1, texts.DISLIKE, tally.down)):
        label = f"{mark} {count}" if count else mark
        buttons.append(InlineKeyboardButton(text=label, callback_data=Vote(reply_id=reply_id, rating=rating).pack()))
    return buttons


def with_votes(
    feedback: FeedbackStore, chat_id: int, reply: ChatReply, markup: InlineKeyboardMarkup | None = None
) -> InlineKeyboardMarkup:
    """``markup`` with a row of 👍/👎 under it for this reply, which is kept to be rated."""
    reply_id = feedback.add_reply(chat_id, reply.context, reply.text)
    rows = [*(markup.inline_keyboard if markup else []), vote_buttons(reply_id)]
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def vote(query: CallbackQuery, callback_data: Vote, feedback: FeedbackStore) -> None:
    """Record the vote (a second press changes it), thank, and show the counts on the buttons."""
    tally = feedback.vote(callback_data.reply_id, query.from_user.id, 1 if callback_data.rating > 0 else -1)
    message = query.message
    if tally is None:
        await query.answer(texts.FEEDBACK_GONE)
        if isinstance(message, Message):
            await message.edit_reply_markup(reply_markup=_without_votes(message.reply_markup))
        return
    await query.answer(texts.FEEDBACK_THANKS)
    if isinstance(message, Message):
        other_rows = _without_votes(message.reply_markup)
        rows = other_rows.inline_keyboard if other_rows else []
        markup = InlineKeyboardMarkup(inline_keyboard=[*rows, vote_buttons(callback_data.reply_id, tally)])
        if markup != message.reply_markup:
            await message.edit_reply_markup(reply_markup=markup)


def _is_vote_row(row: list[InlineKeyboardButton]) -> bool:
    return any(button.callback_data and button.callback_data.startswith(f"{Vote.__prefix__}:") for button in row)


def _without_votes(markup: InlineKeyboardMarkup | None) -> InlineKeyboardMarkup | None:
    if markup is None:
        return None
    rows = [row for row in markup.inline_keyboard if not _is_vote_row(row)]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def create_feedback_router() -> Router:
    """The 👍/👎 buttons (pressed any time, FEEDBACK on or off: old buttons still work)."""
    router = Router(name="feedback")
    router.callback_query.register(vote, Vote.filter())
    return router
