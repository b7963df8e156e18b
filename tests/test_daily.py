"""Daily horoscopes: subscriptions, the minute, the time zone, catch-up, once a day, gone chats, pacing, priority."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramServerError
from aiogram.methods import SendMessage
from harness import ADMIN, Harness, RecordingBackend

import texts
from bot.buttons import DailySubscribe
from bot.delivery import PER_GROUP_MINUTE, PER_SECOND, RETRY_AFTER_FAILURE, DailyDelivery, Pacer
from bot.subscriptions import Subscription, Subscriptions
from generator import ReplyGenerator
from inference.modes import HOROSCOPE
from inference.transformers_backend import TransformersBackend
from settings import ConfigError, Settings, load_settings
from store import ChatStore

MOSCOW = ZoneInfo("Europe/Moscow")


class FakeClock:
    """Local time in a zone that moves only when someone sleeps (instantly)."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.elapsed = 0.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.elapsed += max(0.0, seconds)
        await asyncio.sleep(0)

    def set(self, local: datetime) -> None:
        self.elapsed = (local - self.start).total_seconds()


class Sender:
    """A fast fake of Telegram: records (clock time, chat) of each send, or raises what ``fail`` says."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, int, str]] = []
        self.fail: dict[int, Exception] = {}

    async def __call__(self, subscription: Subscription, text: str) -> None:
        if subscription.chat_id in self.fail:
            raise self.fail[subscription.chat_id]
        self.sent.append((self.clock.monotonic(), subscription.chat_id, text))

    def chats(self) -> list[int]:
        return [chat for _, chat, _ in self.sent]


async def compose(sign: str) -> str:
    return f"гороскоп для {sign}"


@pytest.fixture
def subscriptions(tmp_path: Path):
    store = ChatStore(tmp_path / "bot.sqlite3")
    try:
        yield Subscriptions(store.connection)
    finally:
        store.close()


def at(hour: int, minute: int = 0, day: int = 10, zone: ZoneInfo = MOSCOW) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=zone)


def delivery(subscriptions: Subscriptions, clock: FakeClock, sender: Sender) -> DailyDelivery:
    return DailyDelivery(subscriptions, compose, sender, clock)


def subscribe(subscriptions: Subscriptions, chat_id: int, sign: str, hour: int, minute: int, now: datetime) -> None:
    subscriptions.subscribe(chat_id, sign, time(hour, minute), now.date(), now.timetz().replace(tzinfo=None))


async def test_a_subscription_is_sent_at_its_minute_and_once_that_day(subscriptions: Subscriptions) -> None:
    clock = FakeClock(at(8, 0))
    sender = Sender(clock)
    subscribe(subscriptions, 1, "leo", 8, 30, clock.now())
    daily = delivery(subscriptions, clock, sender)
    clock.set(at(8, 29))
    assert await daily.deliver_due() == 0
    clock.set(at(8, 30))
    assert await daily.deliver_due() == 1
    assert sender.sent[0][1:] == (1, "гороскоп для leo")
    clock.set(at(8, 31))
    assert await daily.deliver_due() == 0
    # A restart the same day (a new delivery on the same database) sends nothing twice.
    assert await delivery(subscriptions, clock, sender).deliver_due() == 0
    clock.set(at(8, 30, day=11))
    assert await daily.deliver_due() == 1, "and again the next day"


async def test_every_subscriber_of_a_sign_reads_the_same_horoscope_generated_once(subscriptions: Subscriptions) -> None:
    clock = FakeClock(at(9, 0))
    calls: list[str] = []

    async def counting(sign: str) -> str:
        calls.append(sign)
        return f"текст {len(calls)}"

    for chat in (1, 2, 3):
        subscribe(subscriptions, chat, "leo", 9, 0, at(8, 0))
    subscribe(subscriptions, 4, "aries", 9, 0, at(8, 0))
    sender = Sender(clock)
    await DailyDelivery(subscriptions, counting, sender, clock).deliver_due()
    assert sorted(calls) == ["aries", "leo"]
    texts_by_chat = {chat: text for _, chat, text in sender.sent}
    assert texts_by_chat[1] == texts_by_chat[2] == texts_by_chat[3] != texts_by_chat[4]


async def test_a_time_already_past_starts_tomorrow(subscriptions: Subscriptions) -> None:
    clock = FakeClock(at(10, 0))
    sender = Sender(clock)
    subscribe(subscriptions, 1, "leo", 9, 0, clock.now())
    assert await delivery(subscriptions, clock, sender).deliver_due() == 0
    clock.set(at(9, 0, day=11))
    assert await delivery(subscriptions, clock, sender).deliver_due() == 1


async def test_times_are_in_the_configured_zone(subscriptions: Subscriptions) -> None:
    # 09:00 in Yekaterinburg is 07:00 in Moscow: a Yekaterinburg clock at 09:00 sends a 09:00 subscription.
    yekaterinburg = ZoneInfo("Asia/Yekaterinburg")
    clock = FakeClock(at(8, 59, zone=yekaterinburg))
    sender = Sender(clock)
    subscribe(subscriptions, 1, "leo", 9, 0, clock.now())
    daily = delivery(subscriptions, clock, sender)
    assert await daily.deliver_due() == 0
    clock.set(at(9, 0, zone=yekaterinburg))
    assert clock.now().astimezone(MOSCOW).hour == 7
    assert await daily.deliver_due() == 1
    assert load_settings({"TIMEZONE": "Asia/Yekaterinburg"}, env_file=None, config_file=None).timezone
    with pytest.raises(ConfigError, match="TIMEZONE"):
        load_settings({"TIMEZONE": "Mars/Olympus"}, env_file=None, config_file=None)


async def test_a_bot_that_was_down_sends_what_it_missed_that_day_only(subscriptions: Subscriptions) -> None:
    clock = FakeClock(at(6, 0, day=9))
    sender = Sender(clock)
    subscribe(subscriptions, 1, "leo", 7, 0, clock.now())
    subscribe(subscriptions, 2, "virgo", 23, 0, clock.now())
    # Down from 06:00 on the 9th until 06:00 on the 10th: the 9th's horoscopes are not sent late the next day.
    clock.set(at(6, 0, day=10))
    daily = delivery(subscriptions, clock, sender)
    assert await daily.deliver_due() == 0
    # Down again from 06:59 until 12:00: the 07:00 one is sent once on coming back, the same day.
    clock.set(at(12, 0, day=10))
    assert await daily.deliver_due() == 1
    assert await daily.deliver_due() == 0
    assert sender.chats() == [1]


async def test_a_chat_that_blocked_the_bot_loses_its_subscription_and_the_wave_goes_on(
    subscriptions: Subscriptions, caplog
) -> None:
    clock = FakeClock(at(9, 0))
    sender = Sender(clock)
    for chat in (1, 2, 3, 4):
        subscribe(subscriptions, chat, "leo", 9, 0, at(8, 0))
    forbidden = TelegramForbiddenError(method=SendMessage(chat_id=1, text="x"), message="Forbidden: bot was blocked")
    gone = TelegramBadRequest(method=SendMessage(chat_id=2, text="x"), message="Bad Request: chat not found")
    flaky = TelegramServerError(method=SendMessage(chat_id=3, text="x"), message="Internal Server Error")
    sender.fail = {1: forbidden, 2: gone, 3: flaky}
    daily = delivery(subscriptions, clock, sender)
    with caplog.at_level(logging.INFO):
        assert await daily.deliver_due() == 1
    assert sender.chats() == [4]
    assert subscriptions.get(1) is None and subscriptions.get(2) is None, "gone chats are unsubscribed"
    assert subscriptions.get(3) is not None and "blocked" in caplog.text
    # The failed one is tried again later that day, not every minute.
    del sender.fail[3]
    clock.set(at(9, 1))
    assert await daily.deliver_due() == 0
    clock.elapsed += RETRY_AFTER_FAILURE
    assert await daily.deliver_due() == 1 and sender.chats() == [4, 3]


async def test_a_wave_of_ten_thousand_is_spread_within_telegrams_limits_and_each_sent_once(
    subscriptions: Subscriptions,
) -> None:
    clock = FakeClock(at(8, 0))
    groups = [-(1000 + n) for n in range(500)]
    chats = list(range(1, 9501)) + groups
    for chat in chats:
        subscribe(subscriptions, chat, ("leo", "virgo", "pisces")[chat % 3], 9, 0, at(8, 0))
    clock.set(at(9, 0))
    sender = Sender(clock)
    assert await delivery(subscriptions, clock, sender).deliver_due() == len(chats)
    assert Counter(sender.chats()) == Counter(chats), "every subscription once"
    times = [when for when, _, _ in sender.sent]
    assert times == sorted(times)
    worst_second = max(sum(1 for t in times[i : i + 40] if t - times[i] < 1.0 - 1e-6) for i in range(len(times)))
    assert worst_second <= PER_SECOND
    duration = times[-1] - times[0]
    assert len(chats) / PER_SECOND - 1 <= duration <= len(chats) / PER_SECOND + 5, "spread, not stalled"


async def test_the_pacer_keeps_a_group_under_twenty_a_minute() -> None:
    clock = FakeClock(at(9, 0))
    pacer = Pacer(clock)
    sends = []
    for _ in range(45):
        await pacer.wait(-100)
        sends.append(clock.monotonic())
    for index in range(len(sends) - PER_GROUP_MINUTE):
        assert sends[index + PER_GROUP_MINUTE] - sends[index] >= 60 - 1e-6
    private = []
    for _ in range(30):
        await pacer.wait(5)
        private.append(clock.monotonic())
    assert private[-1] - private[0] < 2, "private chats are only held to the overall rate"


async def test_a_morning_wave_does_not_make_chat_replies_wait(
    tiny_backend: TransformersBackend, tmp_path: Path
) -> None:
    recorder = RecordingBackend(tiny_backend)
    settings = Settings(model_path=tiny_backend.name, max_batch=2, horoscope_max_new_tokens=8, max_new_tokens=8)
    store = ChatStore(tmp_path / "bot.sqlite3")
    generator = ReplyGenerator(recorder, store, settings)
    try:
        recorder.gate.clear()
        wave = [
            asyncio.ensure_future(generator.compose(HOROSCOPE, sign, background=True))
            for sign in ("Овен", "Телец", "Близнецы", "Рак", "Лев", "Дева", "Весы", "Скорпион")
        ]
        await asyncio.sleep(0.2)  # the first background batch is running, the rest queue
        chat = asyncio.ensure_future(generator.reply(1, "привет", "1"))
        await asyncio.sleep(0.05)
        recorder.gate.set()
        await asyncio.gather(chat, *wave)
        position = next(i for i, batch in enumerate(recorder.batches) if batch[0].turns == ("привет",))
        assert position == 1, f"the chat reply waited for {position} batches of the wave"
        assert len(recorder.batches) == 5
    finally:
        recorder.gate.set()
        generator.shutdown()
        store.close()


# --- the /daily command through the real Dispatcher --------------------------------------------------------


@pytest.fixture
def harness(tiny_backend: TransformersBackend, make_harness) -> Harness:
    return make_harness(tiny_backend, timezone="UTC", daily_time=time(9, 0))


def subscriptions_of(harness: Harness) -> Subscriptions:
    return harness.dispatcher["subscriptions"]


async def test_daily_subscribes_shows_replaces_and_cancels(harness: Harness) -> None:
    [answer] = await harness.send(1, "/daily лев 08:30")
    assert answer.startswith(texts.DAILY_SUBSCRIBED.format(sign="♌ Лев", time="08:30", timezone="UTC"))
    assert subscriptions_of(harness).get(1).at == time(8, 30)
    assert await harness.send(1, "/daily") == [texts.DAILY_SHOW.format(sign="♌ Лев", time="08:30", timezone="UTC")]
    [answer] = await harness.send(1, "/daily Дева")
    assert "♍ Дева" in answer and "09:00" in answer, "DAILY_TIME without a time; one subscription per chat"
    assert subscriptions_of(harness).count() == 1
    assert await harness.send(1, "/daily off") == [texts.DAILY_CANCELLED]
    assert await harness.send(1, "/daily") == [texts.DAILY_NONE]


@pytest.mark.parametrize("arguments", ["котик", "лев 25:00", "лев 8", "лев 08:30 завтра", "08:30"])
async def test_a_bad_sign_or_time_says_what_is_accepted(harness: Harness, arguments: str) -> None:
    [answer] = await harness.send(1, f"/daily {arguments}")
    assert answer.startswith(texts.DAILY_USAGE.split("{")[0]) and "♌ Лев" in answer
    assert subscriptions_of(harness).get(1) is None


async def test_in_groups_only_admins_change_the_subscription(harness: Harness) -> None:
    group = {"chat_type": "supergroup", "user_id": 11}
    harness.session.group_admins = {99}
    assert await harness.send(-100, "/daily лев", **group) == [texts.ADMINS_ONLY]
    assert await harness.send(-100, "/daily", **group) == [texts.DAILY_NONE], "anyone may look"
    [answer] = await harness.send(-100, "/daily лев", chat_type="supergroup", user_id=99)
    assert "♌ Лев" in answer


async def test_the_button_under_a_horoscope_subscribes_at_the_default_time(harness: Harness) -> None:
    await harness.press(1, DailySubscribe(sign="pisces").pack())
    assert subscriptions_of(harness).get(1) == Subscription(
        1, "pisces", time(9, 0), subscriptions_of(harness).get(1).last_sent
    )
    assert "♓ Рыбы" in harness.session.texts(1)[-1]


async def test_forget_and_stats_know_the_subscription(harness: Harness) -> None:
    await harness.send(1, "/daily лев")
    [report] = await harness.send(ADMIN, "/stats")
    assert "Подписок на гороскоп: 1" in report
    from bot.commands import ForgetChoice

    await harness.press(1, ForgetChoice(confirmed=True).pack())
    assert subscriptions_of(harness).get(1) is None


def test_subscriptions_survive_reopening(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "bot.sqlite3")
    Subscriptions(store.connection).subscribe(5, "leo", time(7, 0), date(2026, 1, 1), time(6, 0))
    store.close()
    store = ChatStore(tmp_path / "bot.sqlite3")
    try:
        assert Subscriptions(store.connection).get(5) == Subscription(5, "leo", time(7, 0), None)
    finally:
        store.close()
