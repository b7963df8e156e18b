"""Liveness for container health checks: a heartbeat file the event loop refreshes, and the command that reads it.

The running bot touches ``<DB_PATH>.heartbeat`` every few seconds from its event loop, in polling and
webhook mode alike; a loop that is wedged (a handler blocking it, a deadlock) stops refreshing it.
``python -m bot.health`` exits 0 while the file is fresh (and, in webhook mode, ``/healthz`` answers),
else 1 with one line saying why: what Docker's HEALTHCHECK runs. No aiogram here, so the check starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from settings import PROJECT_DIR, ConfigError, Settings, load_settings

logger = logging.getLogger("bot.health")

# The loop touches the file this often; the check calls it stale past MAX_AGE (several missed beats).
INTERVAL = 10.0
MAX_AGE = 30.0
HTTP_TIMEOUT = 5.0


def heartbeat_path(db_path: str | Path) -> Path:
    """The heartbeat file of the bot whose database is ``db_path``: next to it, so each bot has its own."""
    path = Path(db_path)
    return path.with_name(path.name + ".heartbeat")


class Heartbeat:
    """Touches a file every ``interval`` seconds from the event loop while in use; removes it on the way out."""

    def __init__(self, path: Path, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def beat(self) -> None:
        """Refresh the file's time (a failed write is logged once; the check then reports the bot stale)."""
        try:
            self.path.touch()
        except OSError as error:
            if not self._warned:
                logger.warning("could not write the heartbeat file %s: %s", self.path, error)
                self._warned = True

    async def _run(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> Heartbeat:
        self.beat()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A stopped bot reads as "not running", not as a stale heartbeat.
        self.path.unlink(missing_ok=True)


def heartbeat_problem(path: Path, now: float, max_age: float = MAX_AGE) -> str | None:
    """Why the heartbeat file says the bot is not serving, or None while it is fresh."""
    try:
        age = now - path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat at {path}: the bot is not serving (still loading, stopped, or another DB_PATH)"
    if age > max_age:
        return f"heartbeat {age:.0f} s old (over {max_age:g} s): the bot's event loop is stuck"
    return None


def healthz_url(listen: str) -> str:
    """The ``/healthz`` URL of the webhook server listening on WEBHOOK_LISTEN, as seen from the same machine."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def healthz_problem(url: str, timeout: float = HTTP_TIMEOUT) -> str | None:
    """Why the webhook server's ``/healthz`` did not answer 200, or None when it did."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        return f"{url} did not answer: {error}"
    return None if status == 200 else f"{url} answered {status}"


def problem(settings: Settings, now: float) -> str | None:
    """Why the bot these settings describe is not healthy, or None when it is."""
    found = heartbeat_problem(heartbeat_path(settings.db_path), now)
    if found is None and settings.webhook_url:
        found = healthz_problem(healthz_url(settings.webhook_listen))
    return found


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when the bot is healthy, 1 (with the reason logged) when not, as Docker expects."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.health", description="Exit 0 while the bot serves (for HEALTHCHECK), else 1."
    )
    parser.add_argument("--config-dir", type=Path, default=PROJECT_DIR, metavar="DIR", help="as for main.py")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.INFO)
    try:
        settings = load_settings(env_file=args.config_dir / ".env", config_file=args.config_dir / "config.py")
    except ConfigError as error:
        logger.error("config error: %s", error)
        return 1
    found = problem(settings, time.time())
    if found:
        logger.error("%s", found)
        return 1
    logger.info("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
