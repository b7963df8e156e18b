"""Retries for Bot API calls: wait out 429s, back off on 5xx and network errors."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response, TelegramType

logger = logging.getLogger(__name__)


class RetryRequests(BaseRequestMiddleware):
    """Retries a failed call up to ``attempts`` times; polling keeps aiogram's own backoff."""

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
        if isinstance(method, GetUpdates):
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
