"""Daily horoscope delivery: each subscription once a day at its minute, paced within Telegram's limits.

Every minute the scheduler takes the subscriptions that are due (their minute has come today and
they were not sent today, so a bot that was down sends what it missed, the same day only). Each sign's
horoscope is generated once a day in the background (chat replies go first) and every subscriber of
that sign gets it. Sends are paced: at most ``per_second`` overall and ``per_group_minute`` to one
group; a wave of ten thousand is spread over minutes, not dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramMigrateToChat

from bot.subscriptions import Subscription, Subscriptions

logger = logging.getLogger(__name__)

# Telegram's broadcast limits: about 30 messages a second overall (we keep under), 20 a minute to one group.
PER_SECOND = 25.0
PER_GROUP_MINUTE = 20
# How long a chat whose send failed for another reason waits before the next try (the same day).
RETRY_AFTER_FAILURE = 600.0


class Clock(Protocol):
    """Wall-clock time in the bot's time zone, a monotonic clock, and sleeping (a fake one in tests)."""

    def now(self) -> datetime:
        """The local time now, time-zone aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait this long."""
        ...


class SystemClock:
    """The real clocks, in the time zone TIMEZONE."""

    def __init__(self, timezone: str) -> None:
        self._zone = ZoneInfo(timezone)

    def now(self) -> datetime:
        """The local time now."""
        return datetime.now(self._zone)

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep()."""
        await asyncio.sleep(seconds)


class Pacer:
    """Spaces sends so that no second holds more than ``per_second`` and no group more than ``per_group_minute``."""

    def __init__(self, clock: Clock, per_second: float = PER_SECOND, per_group_minute: int = PER_GROUP_MINUTE) -> None:
        self._clock = clock
        self._gap = 1.0 / per_second
        self._per_group_minute = per_group_minute
        self._next = float("-inf")
        self._group_sends: dict[int, deque[float]] = defaultdict(deque)

    async def wait(self, chat_id: int) -> None:
        """Wait until one more message may go to ``chat_id``, and count it."""
        sends = self._group_sends[chat_id] if chat_id < 0 else None  # groups and channels have negative ids
        while True:
            now = self._clock.monotonic()
            ready = max(now, self._next)
            if sends is not None:
                while sends and sends[0] <= now - 60:
                    sends.popleft()
                if len(sends) >= self._per_group_minute:
                    ready = max(ready, sends[0] + 60)
            if ready <= now:
                break
            await self._clock.sleep(ready - now)
        self._next = now + self._gap
        if sends is not None:
            sends.append(now)


Send = Callable[[Subscription, str], Awaitable[None]]
Compose = Callable[[str], Awaitable[str]]


class DailyDelivery:
    """Sends the due subscriptions' horoscopes; ``run`` does it every minute until cancelled."""

    def __init__(
        self, subscriptions: Subscriptions, compose: Compose, send: Send, clock: Clock, pacer: Pacer | None = None
    ) -> None:
        self._subscriptions = subscriptions
        self._compose = compose
        self._send = send
        self._clock = clock
        self._pacer = pacer or Pacer(clock)
        self._resting: dict[int, float] = {}

    async def run(self) -> None:
        """Deliver what is due now (what was missed while down, too), then at the start of every minute."""
        while True:
            try:
                await self.deliver_due()
            except Exception:
                logger.exception("daily delivery failed; trying again next minute")
            now = self._clock.now()
            next_minute = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
            await self._clock.sleep((next_minute - now).total_seconds())

    async def deliver_due(self) -> int:
        """Send every due subscription its sign's horoscope for today; returns how many were sent."""
        local = self._clock.now()
        today = local.date()
        due = [s for s in self._subscriptions.due(today, local.time()) if not self._resting_now(s.chat_id)]
        horoscopes = await self._horoscopes(today, {s.sign for s in due})
        sent = 0
        for subscription in due:
            text = horoscopes.get(subscription.sign)
            if text is None:
                continue  # its generation failed: tried again next minute
            await self._pacer.wait(subscription.chat_id)
            if await self._deliver(subscription, text, today):
                sent += 1
        if sent:
            logger.info("sent %d daily horoscopes", sent)
        return sent

    def _resting_now(self, chat_id: int) -> bool:
        until = self._resting.get(chat_id)
        if until is not None and until <= self._clock.monotonic():
            del self._resting[chat_id]
            return False
        return until is not None

    async def _horoscopes(self, today: date, signs: Iterable[str]) -> dict[str, str]:
        """Today's horoscope of each sign: kept from earlier today, or generated now (in the background)."""
        found = {sign: text for sign in signs if (text := self._subscriptions.horoscope(today, sign))}
        missing = [sign for sign in signs if sign not in found]
        results = await asyncio.gather(*(self._compose(sign) for sign in missing), return_exceptions=True)
        for sign, result in zip(missing, results, strict=True):
            if isinstance(result, BaseException) or not result:
                logger.warning("no daily horoscope for %s this minute: %s", sign, result or "empty")
                continue
            self._subscriptions.keep_horoscope(today, sign, result)
            found[sign] = result
        return found

    async def _deliver(self, subscription: Subscription, text: str, today: date) -> bool:
        """Send one; a chat that is gone loses its subscription, other failures retry later today."""
        chat_id = subscription.chat_id
        try:
            await self._send(subscription, text)
        except TelegramMigrateToChat as error:
            logger.info("chat %s moved to %s; its subscription follows", chat_id, error.migrate_to_chat_id)
            self._subscriptions.move(chat_id, error.migrate_to_chat_id)
            return False
        except (TelegramForbiddenError, TelegramBadRequest) as error:
            if isinstance(error, TelegramBadRequest) and "chat not found" not in str(error).lower():
                return self._rest(chat_id, error)
            logger.info("chat %s can't be reached (%s); its daily horoscope is cancelled", chat_id, error)
            self._subscriptions.cancel(chat_id)
            return False
        except Exception as error:  # noqa: BLE001 - one chat's failure never stops the wave
            return self._rest(chat_id, error)
        self._subscriptions.mark_sent(chat_id, today)
        return True

    def _rest(self, chat_id: int, error: BaseException) -> bool:
        logger.warning("daily horoscope to chat %s failed (%s); trying again later today", chat_id, error)
        self._resting[chat_id] = self._clock.monotonic() + RETRY_AFTER_FAILURE
        return False
