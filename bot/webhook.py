"""Webhook mode: Telegram posts updates to WEBHOOK_URL; the bot's own HTTP server answers them.

aiogram's request handler checks the ``X-Telegram-Bot-Api-Secret-Token`` header (a post without the
right one gets 401 and is never handled) and answers 200 at once, handling the update in the
background. Since that acknowledges an update before it is handled, each one is written to the inbox
before the 200 goes out, so a crash loses nothing and a post Telegram retries is answered once.
``/healthz`` answers 200 while the bot runs, for load balancers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.inbox import Inbox, kept

logger = logging.getLogger(__name__)


class InboxRequestHandler(SimpleRequestHandler):
    """Records each posted update in the inbox before acknowledging it, and drops a second post of one."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, inbox: Inbox, secret_token: str) -> None:
        super().__init__(dispatcher=dispatcher, bot=bot, secret_token=secret_token, handle_in_background=True)
        self._inbox = inbox

    async def _handle_request_background(self, bot: Bot, request: web.Request) -> web.Response:
        """Keep the update, answer 200, handle it in the background (nothing if it came before)."""
        raw = await request.json(loads=bot.session.json_loads)
        update = Update.model_validate(raw, context={"bot": bot})
        if not kept(update) or self._inbox.receive(bot.id, update):
            task = asyncio.create_task(self._handle_received(bot, raw))
            self._background_feed_update_tasks.add(task)
            task.add_done_callback(self._background_feed_update_tasks.discard)
        else:
            logger.info("update %s was posted again; it is answered once", update.update_id)
        return web.json_response({}, dumps=bot.session.json_dumps)

    async def _handle_received(self, bot: Bot, raw: dict[str, Any]) -> None:
        # received=True tells bot.inbox.KeepUntilAnswered the update is in the inbox already.
        await self.dispatcher.feed_raw_update(bot=bot, update=raw, received=True, **self.data)


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves."""
    return web.Response(text="ok")


def listen_address(listen: str) -> tuple[str, int]:
    """``host:port`` of WEBHOOK_LISTEN."""
    host, _, port = listen.rpartition(":")
    return host or "0.0.0.0", int(port)


async def serve_webhook(
    dispatcher: Dispatcher,
    bot: Bot,
    inbox: Inbox,
    *,
    url: str,
    secret: str,
    listen: str,
    on_listening: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve Telegram's posts at the path of ``url`` on ``listen`` until SIGINT/SIGTERM, then shut down cleanly.

    The dispatcher's start-up hooks run before the server listens, its shutdown hooks (which finish
    the replies in flight) after it stops taking posts. The webhook is set once the server listens.
    """
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    # Registered before the handler, so the dispatcher's shutdown runs before the handler closes the bot's session.
    setup_application(app, dispatcher, bot=bot)
    InboxRequestHandler(dispatcher, bot, inbox, secret).register(app, path=urlsplit(url).path or "/")
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        host, port = listen_address(listen)
        await web.TCPSite(runner, host, port).start()
        await bot.set_webhook(
            url, secret_token=secret, allowed_updates=dispatcher.resolve_used_update_types(), drop_pending_updates=False
        )
        logger.info("webhook set; listening on %s:%d", host, port)
        if on_listening is not None:
            await on_listening()
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
