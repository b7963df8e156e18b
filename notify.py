"""Messages to the admin chats: start and stop notices, and rate-limited error alerts."""

from __future__ import annotations

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

    async def send(self, text: str) -> None:
        """Send a plain-text notice to each admin chat."""
        for chat_id in self.chat_ids:
            try:
                await self._bot.send_message(chat_id, text, parse_mode=None)
            except TelegramAPIError as error:
                logger.warning("admin chat %s not reached: %s", chat_id, error)

    async def alert(self, error: str) -> None:
        """Tell the admins about an error; a burst sends one alert, the next one counts the rest."""
        now = time.monotonic()
        if now - self._last_alert < self._alert_interval:
            self._suppressed += 1
            return
        text = texts.ADMIN_ALERT.format(error=error)
        if self._suppressed:
            text += texts.ADMIN_ALERT_MORE.format(count=self._suppressed, minutes=round(self._alert_interval / 60))
        self._last_alert, self._suppressed = now, 0
        await self.send(text)
