"""Bot API request middlewares: retries (wait out 429s, back off on 5xx and network errors), expired presses."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import AnswerCallbackQuery, GetUpdates, SendMessageDraft, TelegramMethod
from aiogram.methods.base import Response, TelegramType

logger = logging.getLogger(__name__)


class RetryRequests(BaseRequestMiddleware):
    """Retries a failed call up to ``attempts`` times; polling keeps aiogram's own backoff, and drafts get none.

    A draft is outdated by the time a retry could go (bot.drafts skips a failed one and sends the next).
    """

    def __init__(self, attempts: int = 5, backoff: float = 0.5, max_backoff: float = 10.0) -> None:
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        """Call the Bot API, retrying on 429 (after retry_after), 5xx and network errors."""
        if isinstance(method, GetUpdates | SendMessageDraft):
            return await make_request(bot, method)
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt == self._attempts:
                    raise
                wait = error.retry_after
            except (TelegramServerError, TelegramNetworkError) as error:
                if attempt == self._attempts:
                    raise
                wait, delay = delay, min(delay * 2, self._max_backoff)
                logger.info("%s failed (%s), retry %d in %.1f s", method.__api_method__, error, attempt, wait)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")


class IgnoreExpiredPresses(BaseRequestMiddleware):
    """Treats answering a button press Telegram no longer knows (too old, answered before) as done.

    A press handled again after a restart, or answered twice on an error path, must still get its
    real answer in the chat rather than fail on the acknowledgement.
    """

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        """Call the Bot API; an expired answerCallbackQuery returns success."""
        try:
            return await make_request(bot, method)
        except TelegramBadRequest as error:
            if not isinstance(method, AnswerCallbackQuery) or "query" not in str(error).lower():
                raise
            logger.info("press %s no longer answerable: %s", method.callback_query_id, error)
            return Response[bool](ok=True, result=True)  # type: ignore[return-value]
