"""The health check: the heartbeat the event loop refreshes, the command Docker runs, in polling and webhook mode."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from botprocess import ROOT, bot_env, start_bot, stop_bot
from fake_telegram import FakeTelegram
from test_e2e_webhook import free_port, webhook_settings
from waiting import until

from bot.health import (
    MAX_AGE,
    Heartbeat,
    healthz_problem,
    healthz_url,
    heartbeat_path,
    heartbeat_problem,
    problem,
)
from settings import Settings


def test_the_heartbeat_file_sits_next_to_the_database() -> None:
    assert heartbeat_path("/data/bot.sqlite3") == Path("/data/bot.sqlite3.heartbeat")


def test_a_fresh_heartbeat_is_healthy_and_an_old_or_missing_one_is_not(tmp_path: Path) -> None:
    beat = tmp_path / "bot.sqlite3.heartbeat"
    assert "not serving" in heartbeat_problem(beat, now=time.time())
    beat.touch()
    written = beat.stat().st_mtime
    assert heartbeat_problem(beat, now=written + MAX_AGE - 1) is None
    stale = heartbeat_problem(beat, now=written + MAX_AGE + 5)
    assert stale == f"heartbeat {MAX_AGE + 5:.0f} s old (over {MAX_AGE:g} s): the bot's event loop is stuck"


async def test_the_event_loop_refreshes_the_heartbeat_and_a_blocked_loop_does_not(tmp_path: Path) -> None:
    beat = tmp_path / "bot.sqlite3.heartbeat"
    async with Heartbeat(beat, interval=0.01):
        assert beat.exists(), "written on entry"
        os.utime(beat, (1.0, 1.0))
        await until(lambda: beat.stat().st_mtime > 1.0, "the loop refreshed the file")
        before = beat.stat().st_mtime_ns
        time.sleep(0.3)  # the loop is blocked here, as a wedged handler would block it: nothing can beat
        assert beat.stat().st_mtime_ns == before, "a beat came while the loop was blocked"
    assert not beat.exists(), "removed on the way out, so a stopped bot does not read as alive"


def test_a_heartbeat_that_cannot_be_written_does_not_stop_the_bot(tmp_path: Path) -> None:
    Heartbeat(tmp_path / "missing-folder" / "bot.sqlite3.heartbeat").beat()


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0.0.0.0:8080", "http://127.0.0.1:8080/healthz"),
        (":8443", "http://127.0.0.1:8443/healthz"),
        ("10.1.2.3:80", "http://10.1.2.3:80/healthz"),
        ("[::1]:8080", "http://[::1]:8080/healthz"),
    ],
)
def test_the_healthz_url_of_webhook_listen(listen: str, url: str) -> None:
    assert healthz_url(listen) == url


async def test_webhook_mode_also_needs_healthz_to_answer(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        db_path=str(tmp_path / "bot.sqlite3"),
        webhook_url="https://bot.example.com/hook",
        webhook_secret="s",
        webhook_listen=f"127.0.0.1:{port}",
    )
    heartbeat_path(settings.db_path).touch()
    closed = await asyncio.to_thread(problem, settings, time.time())
    assert closed.startswith(f"http://127.0.0.1:{port}/healthz did not answer"), closed

    status = 200
    app = web.Application()
    app.router.add_get("/healthz", lambda request: web.Response(status=status))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        assert await asyncio.to_thread(problem, settings, time.time()) is None
        status = 503
        url = healthz_url(settings.webhook_listen)
        assert await asyncio.to_thread(healthz_problem, url) == f"{url} answered 503"
    finally:
        await runner.cleanup()


def run_check(workdir: Path, **settings: object) -> subprocess.CompletedProcess[str]:
    """``python -m bot.health`` as Docker's HEALTHCHECK runs it, with the bot's settings."""
    return subprocess.run(
        [sys.executable, "-m", "bot.health", "--config-dir", str(workdir)],
        cwd=ROOT,
        env=bot_env(db_path=workdir / "bot.sqlite3", **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_the_running_bot_is_healthy_and_a_stopped_one_is_not(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path, mode: str
) -> None:
    settings = webhook_settings(free_port()) if mode == "webhook" else {}
    bot = await start_bot(fake, tmp_path, tiny_model_dir, **settings)
    settings["telegram_api_base"] = fake.base_url  # the check reads the settings as the bot does
    try:
        alive = await asyncio.to_thread(run_check, tmp_path, **settings)
        assert alive.returncode == 0, alive.stderr
        await stop_bot(bot)
    finally:
        bot.kill()
    stopped = await asyncio.to_thread(run_check, tmp_path, **settings)
    assert stopped.returncode == 1
    assert "no heartbeat" in stopped.stderr, stopped.stderr


def test_a_broken_setting_is_unhealthy_not_a_crash(tmp_path: Path) -> None:
    checked = run_check(tmp_path, temperature="hot")
    assert checked.returncode == 1
    assert checked.stderr.strip().splitlines()[-1].startswith("config error: TEMPERATURE"), checked.stderr
