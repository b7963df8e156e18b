"""SIGTERM before the bot serves (docker stop during start-up) stops it at once with status 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from aiohttp import web
from botprocess import BotProcess
from fake_openai import FakeOpenAI
from fake_telegram import FakeTelegram


class HeldModelList(FakeOpenAI):
    """An inference server that holds the start-up check's model list: the bot is loading until released."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def _models(self, request: web.Request) -> web.Response:
        self.asked.set()
        await self.release.wait()
        return await super()._models(request)


async def test_sigterm_while_loading_stops_the_bot_with_status_0(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    server = await HeldModelList().start()
    bot = BotProcess(
        tmp_path,
        bot_token=fake.token,
        telegram_api_base=fake.base_url,
        backend="openai",
        inference_url=server.url,
        model_path=tiny_model_dir,
        db_path=tmp_path / "bot.sqlite3",
    )
    try:
        await asyncio.wait_for(server.asked.wait(), 120)
        bot.signal(signal.SIGTERM)
        assert await bot.wait(30) == 0, bot.log
        assert "SIGTERM before serving: stopped" in bot.log
        assert not any(call.method == "getUpdates" for call in fake.calls), "it never started serving"
    finally:
        server.release.set()
        bot.kill()
        await server.stop()
