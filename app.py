"""The Telegram bot's wiring: the Bot, its Dispatcher with the handlers, and polling or the webhook until a signal.

main.py imports this only once the options are parsed and the settings read (aiogram takes seconds to import).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand

import texts
from bot.access import AllowList
from bot.daily import send_daily
from bot.delivery import DailyDelivery, SystemClock
from bot.drafts import Drafts
from bot.feedback_store import FeedbackStore
from bot.fsm_storage import SQLiteStorage
from bot.health import Heartbeat, heartbeat_path
from bot.inbox import Inbox, KeepUntilAnswered, recover
from bot.middlewares import ChatArrivals, ChatOrder, InFlightUpdates
from bot.modes import Composer
from bot.notify import AdminNotifier
from bot.retry import IgnoreExpiredPresses, RetryRequests
from bot.stats import BotStats
from bot.subscriptions import Subscription, Subscriptions
from bot.webhook import serve_webhook
from generator import ReplyGenerator, describe_models
from handlers import create_router
from inference.modes import HOROSCOPE, sign_by_key
from inference.profanity import ALLOW, AVOID
from settings import Settings
from store import ChatStore

logger = logging.getLogger("bot")


def create_bot(settings: Settings, session: BaseSession | None = None) -> Bot:
    """A Bot for the token, talking to TELEGRAM_API_BASE when set, with retries on failed calls.

    Every message goes out as plain text (no parse mode), so model output and user text can't break
    markup. ``session`` replaces the HTTP session (the tests' recording one).
    """
    if session is None:
        api = TelegramAPIServer.from_base(settings.telegram_api_base) if settings.telegram_api_base else None
        session = AiohttpSession(api=api) if api else AiohttpSession()
    session.middleware(RetryRequests())
    session.middleware(IgnoreExpiredPresses())
    return Bot(settings.bot_token, session=session, default=DefaultBotProperties(parse_mode=None))


def create_dispatcher(
    generator: ReplyGenerator,
    store: ChatStore,
    admins: AdminNotifier,
    settings: Settings,
    dice: random.Random | None = None,
) -> Dispatcher:
    """A Dispatcher with the bot's router, the inbox, the allow-list and their dependencies in the workflow data.

    ``dice`` decides which group messages nobody addressed get an answer (REPLY_CHANCE); tests seed it.

    FSM state (a question the bot asked) is kept in the bot's database, so it outlives a restart.
    """
    subscriptions = Subscriptions(store.connection)
    stats = BotStats(
        model_summary=describe_models(generator),
        queue_depth=lambda: generator.pending,
        subscription_count=subscriptions.count,
    )
    inbox = Inbox(store.connection)
    feedback = FeedbackStore(store.connection)
    drafts = Drafts(settings.streaming, settings.draft_interval_ms / 1000)
    composer = Composer(generator, stats, feedback, settings.feedback, drafts)
    dispatcher = Dispatcher(
        storage=SQLiteStorage(store.connection),
        generator=generator,
        store=store,
        admins=admins,
        settings=settings,
        stats=stats,
        inbox=inbox,
        subscriptions=subscriptions,
        feedback=feedback,
        composer=composer,
        dice=dice or random.Random(),
        drafts=drafts,
    )
    # First of the bot's own, so each chat's line is in the order its updates came.
    arrivals = ChatArrivals()
    dispatcher.update.outer_middleware(arrivals)
    dispatcher.update.outer_middleware(KeepUntilAnswered(inbox))
    allow_list = AllowList(settings.allowed_users, settings.allowed_chats)
    dispatcher.message.outer_middleware(allow_list)
    dispatcher.callback_query.outer_middleware(allow_list)
    dispatcher.include_router(create_router(ChatOrder(arrivals, settings.chat_queue_limit)))
    return dispatcher


async def register_commands(bot: Bot) -> None:
    """Show the bot's commands, in Russian, in Telegram's menu."""
    commands = [BotCommand(command=name, description=text) for name, text in texts.COMMANDS.items()]
    try:
        await bot.set_my_commands(commands)
    except TelegramAPIError as error:
        logger.warning("could not register the command menu: %s", error)


async def warn_if_deaf(bot: Bot, settings: Settings) -> None:
    """Log how to let the bot see a group's talk when REPLY_CHANCE is set but privacy mode hides that talk."""
    if settings.reply_chance and not (await bot.me()).can_read_all_group_messages:
        logger.warning(
            "REPLY_CHANCE=%g, but the bot's privacy mode is on: it sees only what is addressed to it in groups "
            "(unless it is an admin there). @BotFather -> /setprivacy -> this bot -> Disable, then add it to "
            "each group again",
            settings.reply_chance,
        )


async def housekeeping(store: ChatStore, inbox: Inbox, feedback: FeedbackStore, ttl_days: float) -> None:
    """Now and then every hour: forget old handled update ids, and what is older than HISTORY_TTL_DAYS if set."""
    while True:
        inbox.prune()
        if ttl_days:
            cutoff = time.time() - ttl_days * 86400
            dropped, rated = store.drop_turns_before(cutoff), feedback.drop_before(cutoff)
            if dropped or rated:
                logger.info("deleted %d turns and %d rated replies older than %g days", dropped, rated, ttl_days)
        await asyncio.sleep(3600)


async def run_bot(settings: Settings, generator: ReplyGenerator, store: ChatStore) -> None:
    """Serve Telegram (long polling, or a webhook when WEBHOOK_URL is set) until SIGINT/SIGTERM.

    Then finish the replies in flight and tell the admins.
    """
    bot = create_bot(settings)
    admins = AdminNotifier(bot, settings.admin_chat_id)
    dispatcher = create_dispatcher(generator, store, admins, settings)
    in_flight = InFlightUpdates()
    dispatcher.update.outer_middleware(in_flight)

    background: set[asyncio.Task[None]] = set()

    async def on_startup(inbox: Inbox, stats: BotStats, subscriptions: Subscriptions, feedback: FeedbackStore) -> None:
        await register_commands(bot)
        await warn_if_deaf(bot, settings)
        # Before the first getUpdates: what a crash left is answered before anything new.
        stats.recovered = await recover(
            inbox,
            dispatcher,
            bot,
            max_age=settings.recovery_max_age,
            concurrency=max(1, settings.max_pending // 2),
        )
        background.add(asyncio.create_task(housekeeping(store, inbox, feedback, settings.history_ttl_days)))
        background.add(asyncio.create_task(daily_deliveries(bot, generator, subscriptions, settings).run()))
        if not settings.webhook_url:
            await announce()

    async def announce() -> None:
        # Once updates can arrive: in webhook mode, after the server listens.
        await admins.send(
            texts.ADMIN_STARTED.format(
                models=describe_models(generator),
                load_seconds=sum(backend.load_seconds for backend in generator.backends),
            )
        )

    async def on_shutdown() -> None:
        for task in background:
            task.cancel()
        logger.info(
            "stopping: waiting up to %g s (SHUTDOWN_TIMEOUT) for %d updates in flight",
            settings.shutdown_timeout,
            in_flight.count,
        )
        unfinished = await in_flight.wait(settings.shutdown_timeout)
        if unfinished:
            logger.warning("%d replies still running at shutdown; stopping anyway", unfinished)
        await admins.close()
        await admins.send(texts.ADMIN_STOPPING)
        await generator.aclose()

    dispatcher.startup.register(on_startup)
    dispatcher.shutdown.register(on_shutdown)
    # Refreshed by this event loop for the container's health check (python -m bot.health), in both modes.
    async with Heartbeat(heartbeat_path(settings.db_path)):
        if not settings.webhook_url:
            await dispatcher.start_polling(bot, handle_signals=True, close_bot_session=True)
            return
        await serve_webhook(
            dispatcher,
            bot,
            dispatcher["inbox"],
            url=settings.webhook_url,
            secret=settings.webhook_secret,
            listen=settings.webhook_listen,
            on_listening=announce,
        )


def daily_deliveries(
    bot: Bot, generator: ReplyGenerator, subscriptions: Subscriptions, settings: Settings
) -> DailyDelivery:
    """The daily horoscopes: generated in the background through the generator, sent with the bot.

    A sign's horoscope is one text for all its subscribers that day, generated once: with avoid's retries
    when any of them chose avoid (masked only if every try swore), else as the model wrote it. Each chat
    gets it masked at sending if it chose mask or avoid, and as it is if it allows swearing.
    """
    clock = SystemClock(settings.timezone)

    async def compose(sign: str) -> str:
        avoid = any(generator.profanity_mode(chat_id) == AVOID for chat_id in subscriptions.chats_of(sign))
        name = sign_by_key(sign).name
        return (await generator.compose(HOROSCOPE, name, background=True, profanity=AVOID if avoid else ALLOW)).text

    async def send(subscription: Subscription, text: str) -> None:
        shown = generator.apply_profanity(text, generator.profanity_mode(subscription.chat_id))
        await send_daily(bot, subscription, shown, clock.now().strftime("%d.%m"))

    return DailyDelivery(subscriptions, compose, send, clock)
