"""Run the bot: ``python main.py`` (Telegram long polling) or ``python main.py --console`` (terminal chat).

Only light modules are imported before the options are parsed, so ``--help`` and bad settings answer at once;
aiogram, torch and transformers come after.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from inference.backend import ModelLoadError
from settings import PROJECT_DIR, ConfigError, load_settings
from store import ChatStore, StoreError

logger = logging.getLogger("bot")

SET_A_TOKEN = "BOT_TOKEN is not set: put BOT_TOKEN=<token from @BotFather> in .env (see config.example.py)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="ruDialoGPT chat bot for Telegram: answers messages with a dialogue model, one process.",
        epilog=(
            "Settings come from the environment, then .env, then config.py (both read from --config-dir); "
            "config.example.py lists every setting with its default. BOT_TOKEN, the token from @BotFather, "
            "goes in .env as BOT_TOKEN=...; without it the bot can only chat in the terminal (--console)."
        ),
    )
    parser.add_argument("--console", action="store_true", help="chat with the model in this terminal, token or not")
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=PROJECT_DIR,
        metavar="DIR",
        help="the folder with .env and config.py (default: the folder of main.py, %(default)s)",
    )
    return parser.parse_args(argv)


def stop_before_serving(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before the bot serves (loading the model, say): stop now, with status 0; nothing received is lost."""
    logger.info("SIGTERM before serving: stopped")
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Load settings and the model once, then serve Telegram (or the console); returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        settings = load_settings(env_file=args.config_dir / ".env", config_file=args.config_dir / "config.py")
    except ConfigError as error:
        logger.error("config error: %s", error)
        return 2
    logging.getLogger().setLevel(settings.log_level.upper())
    console = args.console or not settings.bot_token
    if not settings.bot_token and not args.console:
        if not sys.stdin.isatty():
            logger.error("%s, or run `python main.py --console` to chat with the model in a terminal", SET_A_TOKEN)
            return 2
        logger.warning("%s; chatting with the model in this terminal meanwhile", SET_A_TOKEN)

    # The heavy imports (aiogram, torch, transformers), now that they will be used.
    from aiogram.exceptions import TelegramNetworkError, TelegramServerError, TelegramUnauthorizedError

    from app import run_bot
    from console import run_console
    from generator import ReplyGenerator, load_models
    from inference.devices import DeviceError

    try:
        store = ChatStore(settings.db_path)
        chat_model, task_models = load_models(settings)
        generator = ReplyGenerator(chat_model, store, settings, task_models)
    except (ModelLoadError, StoreError) as error:
        logger.error("%s", error)
        return 2
    except DeviceError as error:
        logger.error("DEVICE=%s", error)
        return 2
    try:
        generator.warm_up()
        if console:
            return run_console(generator, store)
        asyncio.run(run_bot(settings, generator, store))
    except TelegramUnauthorizedError:
        logger.error("Telegram rejected BOT_TOKEN (401 Unauthorized): copy the token from @BotFather again")
        return 2
    except (TelegramNetworkError, TelegramServerError) as error:
        logger.error("could not reach the Bot API at %s: %s", settings.telegram_api_base or "api.telegram.org", error)
        return 1
    finally:
        generator.shutdown()
        store.close()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    # Unhandled, SIGTERM is ignored by a container's PID 1, so `docker stop` during start-up would wait for SIGKILL.
    # Once the bot serves, its own handler takes over and finishes the replies in flight first.
    signal.signal(signal.SIGTERM, stop_before_serving)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Ctrl+C while the model loads: nothing to save yet, so stop without a traceback.
        sys.exit(130)
