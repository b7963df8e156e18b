"""Messages to the admin chats: start and stop notices, and rate-limited error alerts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

import texts

logger = logging.getLogger(__name__)


class AdminNotifier:
    """Sends to every ADMIN_CHAT_ID; an admin chat that can't be reached is logged and skipped."""

    def __init__(self, bot: Bot, chat_ids: Sequence[int], alert_interval: float = 300.0) -> None:
        self._bot = bot
        self.chat_ids = tuple(chat_ids)
        self._alert_interval = alert_interval
        self._last_alert = float("-inf")
        self._suppressed = 0
        self._summary: asyncio.Task[None] | None = None

    async def send(self, text: str) -> None:
        """Send a plain-text notice to each admin chat."""
        for chat_id in self.chat_ids:
            try:
                await self._bot.send_message(chat_id, text)
            except TelegramAPIError as error:
                logger.warning("admin chat %s not reached: %s", chat_id, error)

    async def alert(self, error: str) -> None:
        """Tell the admins about an error; a burst sends one alert, then one count of the rest."""
        now = time.monotonic()
        if now - self._last_alert < self._alert_interval:
            self._suppressed += 1
            if self._summary is None:
                self._summary = asyncio.create_task(
                    self._summarise_after(self._last_alert + self._alert_interval - now)
                )
            return
        self._last_alert = now
        await self.send(texts.ADMIN_ALERT.format(error=error))

    async def close(self) -> None:
        """Send the count of errors not yet reported, if any (at shutdown)."""
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
            await self._send_summary()

    async def _summarise_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._summary = None
        await self._send_summary()

    async def _send_summary(self) -> None:
        if self._suppressed:
            count, self._suppressed = self._suppressed, 0
            self._last_alert = time.monotonic()
            await self.send(texts.ADMIN_ALERT_MORE.format(count=count, seconds=round(self._alert_interval)))
