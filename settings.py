"""Settings: one frozen, typed object built once at start-up from the environment.

Values come from (highest first) the process environment, a ``.env`` file (python-dotenv) and an
optional ``config.py`` (a copy of ``config.example.py``), both read from the project folder. Every
setting, its default and its meaning are documented in ``config.example.py``.

Paths: ``~`` is expanded everywhere; a relative path set in the environment is taken from the
current directory, one in ``.env`` or ``config.py`` from the folder of that file, and the defaults
(``saved_model``, ``data/bot.sqlite3``) from the project folder, wherever the bot is started.
"""

from __future__ import annotations

import difflib
import os
import re
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from inference.backend import is_hub_id
from inference.dialogue import MAX_CONTEXT_TURNS
from inference.modes import CHAT, HOROSCOPE, TOAST
from inference.profanity import MODES as PROFANITY_MODES
from inference.profanity import read_word_list
from inference.sampling import SAMPLING_FIELDS, STYLES

if TYPE_CHECKING:
    from store import ChatPreferences

# The project's folder: where .env and config.py are read from and the default paths point.
PROJECT_DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it and says what to fix."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the bot, with its default (see config.example.py)."""

    bot_token: str = ""
    admin_chat_id: tuple[int, ...] = ()
    allowed_users: tuple[int, ...] = ()
    allowed_chats: tuple[int, ...] = ()
    trigger_word: str = ""
    reply_chance: float = 0.0
    telegram_api_base: str = ""
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_listen: str = "0.0.0.0:8080"
    model_path: str = str(PROJECT_DIR / "saved_model")
    backend: str = "auto"
    inference_url: str = ""
    inference_api_key: str = ""
    inference_model: str = ""
    device: str = "auto"
    dtype: str = "auto"
    workers: int = 1
    # None: the engine's measured default on its device (inference/tuning.py).
    max_batch: int | None = None
    batch_window_ms: float | None = None
    max_pending: int = 64
    chat_queue_limit: int = 3
    generation_timeout: float = 60.0
    streaming: str = "auto"
    draft_interval_ms: float = 400.0
    db_path: str = str(PROJECT_DIR / "data" / "bot.sqlite3")
    history_ttl_days: float = 0.0
    context_turns: int = 3
    reply_style: str = "lively"
    # Sampling: None takes the model's own generation_config.json, else the model card's values.
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    # Toasts and horoscopes: their own model (empty: the chat model) and length (None: the model's or 120).
    toast_model_path: str = ""
    horoscope_model_path: str = ""
    toast_max_new_tokens: int | None = None
    horoscope_max_new_tokens: int | None = None
    shutdown_timeout: float = 30.0
    recovery_max_age: float = 3600.0
    feedback: str = "off"
    profanity: str = "allow"
    blocked_words: str = ""
    daily_time: time = time(9, 0)
    timezone: str = "Europe/Moscow"
    log_level: str = "info"

    def sampling_overrides(self, task: str) -> dict[str, float | int | None]:
        """The sampling values these settings set for a task (None where they leave the model's own)."""
        if task == TOAST:
            return {"max_new_tokens": self.toast_max_new_tokens}
        if task == HOROSCOPE:
            return {"max_new_tokens": self.horoscope_max_new_tokens}
        return {name: getattr(self, name) for name in SAMPLING_FIELDS}

    @staticmethod
    def max_new_tokens_setting(task: str) -> str:
        """The name of the setting that limits a task's new tokens."""
        return "MAX_NEW_TOKENS" if task == CHAT else f"{task.upper()}_MAX_NEW_TOKENS"

    def model_path_for(self, task: str) -> str:
        """The model directory or hub id that does a task."""
        own = {TOAST: self.toast_model_path, HOROSCOPE: self.horoscope_model_path}.get(task, "")
        return own or self.model_path

    def chat_choices(self, preferences: ChatPreferences) -> tuple[int, str]:
        """A chat's context turns and reply style: its own choice, else (or if the style is gone) these settings'."""
        style = preferences.style if preferences.style in STYLES else self.reply_style
        return preferences.context_turns or self.context_turns, style

    def reply_chance_for(self, preferences: ChatPreferences) -> float:
        """How likely the bot answers a group message not addressed to it: the group's choice, else REPLY_CHANCE."""
        return self.reply_chance if preferences.reply_chance is None else preferences.reply_chance

    def profanity_for(self, preferences: ChatPreferences) -> str:
        """A chat's way with obscene words (allow, mask, avoid): its own choice, else PROFANITY."""
        return preferences.profanity if preferences.profanity in PROFANITY_MODES else self.profanity


def _int(value: str) -> int:
    return int(value.strip())


def _int_list(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in value.replace(";", ",").split(",") if part.strip())


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in allowed:
            raise ValueError
        return value

    return parse


def _device(value: str) -> str:
    value = value.strip().lower()
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        return value
    raise ValueError


def parse_time_of_day(text: str) -> time | None:
    """``08:30``, ``8:30`` or ``8.30`` as a time of day; None if it is not one (DAILY_TIME, /daily)."""
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        return None
    return time(int(match[1]), int(match[2]))


def _time_of_day(value: str) -> time:
    parsed = parse_time_of_day(value)
    if parsed is None:
        raise ValueError(value)
    return parsed


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(value) from None
    return value.strip()


def _strip(value: str) -> str:
    return value.strip()


_TIME_OF_DAY = re.compile(r"(\d{1,2})[:.](\d{2})")
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_LISTEN = re.compile(r"[\w.:\[\]-]*:\d{1,5}")
# Settings whose values never appear in an error message.
_SECRETS = frozenset({"bot_token", "inference_api_key", "webhook_secret"})

_PARSERS: dict[str, tuple[Callable[[str], Any], str, Callable[[Any], bool]]] = {
    # name: (parser, what a valid value looks like, extra check on the parsed value)
    "bot_token": (_strip, "the token from @BotFather", lambda v: True),
    "admin_chat_id": (_int_list, "a chat id or a comma-separated list of ids", lambda v: True),
    "allowed_users": (_int_list, "a user id or a comma-separated list of ids", lambda v: True),
    "allowed_chats": (_int_list, "a chat id or a comma-separated list of ids", lambda v: True),
    "trigger_word": (_strip, "one word such as Тимоха", lambda v: v == "" or v.split() == [v]),
    "reply_chance": (float, "a number from 0 to 1, such as 0.1 (one group message in ten)", lambda v: 0 <= v <= 1),
    "telegram_api_base": (_strip, "a URL such as http://127.0.0.1:8081", lambda v: v == "" or "://" in v),
    "webhook_url": (_strip, "the public address Telegram posts to, https://…", lambda v: v == "" or "://" in v),
    "webhook_secret": (
        _strip,
        "1 to 256 of the characters A-Z a-z 0-9 _ -",
        lambda v: _WEBHOOK_SECRET.fullmatch(v) is not None,
    ),
    "webhook_listen": (_strip, "host:port such as 0.0.0.0:8080", lambda v: _LISTEN.fullmatch(v) is not None),
    "model_path": (_strip, "a model directory or a hub id", lambda v: bool(v)),
    "backend": (
        _choice("auto", "transformers", "ctranslate2", "openai"),
        "auto, transformers, ctranslate2 or openai",
        lambda v: True,
    ),
    "inference_url": (_strip, "a URL such as http://gpu-box:8000/v1", lambda v: v == "" or "://" in v),
    "inference_api_key": (_strip, "the inference server's API key", lambda v: True),
    "inference_model": (_strip, "a model name the inference server serves", lambda v: True),
    "device": (_device, "auto, cpu, cuda, cuda:N or mps", lambda v: True),
    "dtype": (_choice("auto", "float32", "float16", "bfloat16"), "auto, float32, float16 or bfloat16", lambda v: True),
    "workers": (_int, "a whole number from 1 to 64", lambda v: 1 <= v <= 64),
    "max_batch": (_int, "a whole number from 1 to 256", lambda v: 1 <= v <= 256),
    "batch_window_ms": (float, "a number of milliseconds from 0 to 1000", lambda v: 0 <= v <= 1000),
    "max_pending": (_int, "a whole number of 1 or more", lambda v: v >= 1),
    "chat_queue_limit": (_int, "a whole number of 1 or more", lambda v: v >= 1),
    "generation_timeout": (float, "a number of seconds above 0", lambda v: v > 0),
    "streaming": (_choice("auto", "off"), "auto (drafts in private chats) or off", lambda v: True),
    "draft_interval_ms": (float, "a number of milliseconds from 0 to 60000", lambda v: 0 <= v <= 60000),
    "db_path": (_strip, "a file path such as data/bot.sqlite3", lambda v: bool(v)),
    "history_ttl_days": (float, "a number of days of 0 or more (0 keeps history forever)", lambda v: v >= 0),
    "context_turns": (_int, f"a whole number from 1 to {MAX_CONTEXT_TURNS}", lambda v: 1 <= v <= MAX_CONTEXT_TURNS),
    "reply_style": (_choice(*STYLES), " or ".join(STYLES), lambda v: True),
    "max_new_tokens": (_int, "a whole number from 1 to 1024", lambda v: 1 <= v <= 1024),
    "toast_model_path": (_strip, "a model directory or a hub id (empty: MODEL_PATH)", lambda v: True),
    "horoscope_model_path": (_strip, "a model directory or a hub id (empty: MODEL_PATH)", lambda v: True),
    "toast_max_new_tokens": (_int, "a whole number from 1 to 1024", lambda v: 1 <= v <= 1024),
    "horoscope_max_new_tokens": (_int, "a whole number from 1 to 1024", lambda v: 1 <= v <= 1024),
    "temperature": (float, "a number above 0", lambda v: v > 0),
    "top_k": (_int, "a whole number of 0 or more", lambda v: v >= 0),
    "top_p": (float, "a number above 0 and at most 1", lambda v: 0 < v <= 1),
    "repetition_penalty": (float, "a number above 0", lambda v: v > 0),
    "no_repeat_ngram_size": (_int, "a whole number of 0 or more", lambda v: v >= 0),
    "shutdown_timeout": (float, "a number of seconds of 0 or more", lambda v: v >= 0),
    "daily_time": (_time_of_day, "a time of day such as 09:00", lambda v: True),
    "timezone": (_timezone, "an IANA time zone such as Europe/Moscow or UTC", lambda v: True),
    "feedback": (
        _choice("off", "on", "all"),
        "off, on (chat replies) or all (toasts and horoscopes too)",
        lambda v: True,
    ),
    "profanity": (
        _choice(*PROFANITY_MODES),
        "allow, mask (obscene words as х**) or avoid (ask the model again, then mask)",
        lambda v: True,
    ),
    "blocked_words": (_strip, "the path of a text file with one word or phrase a line", lambda v: True),
    "recovery_max_age": (float, "a number of seconds of 0 or more (0: no limit)", lambda v: v >= 0),
    "log_level": (_choice("debug", "info", "warning", "error"), "DEBUG, INFO, WARNING or ERROR", lambda v: True),
}


_KNOWN = {field.name.upper() for field in fields(Settings)}
# Settings that name a file or folder: "~" is expanded, and relative ones in a settings file follow that file.
_MODEL_PATHS = ("model_path", "toast_model_path", "horoscope_model_path")
_PATHS = (*_MODEL_PATHS, "db_path", "blocked_words")


def _unknown_setting(path: Path, name: str) -> ConfigError:
    close = difflib.get_close_matches(name.upper(), _KNOWN, n=1)
    hint = f"; did you mean {close[0]}?" if close else " (config.example.py lists them all)"
    return ConfigError(f"{path}: unknown setting {name}{hint}")


def _config_file_values(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        namespace = runpy.run_path(str(path))
    except Exception as error:  # noqa: BLE001 - any error in the user's file is a config error
        raise ConfigError(f"{path} could not be read: {type(error).__name__}: {error}") from None
    values: dict[str, str] = {}
    for name, value in namespace.items():
        if not name.isupper() or value is None:
            continue
        if name not in _KNOWN:
            raise _unknown_setting(path, name)
        values[name] = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return values


def _env_file_values(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        # utf-8-sig: an editor's byte-order mark would otherwise glue itself to the first key.
        values = dotenv_values(path, encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start} is not): save it as UTF-8") from None
    for name in values:
        if name not in _KNOWN:
            raise _unknown_setting(path, name)
    return {name: value for name, value in values.items() if value is not None}


def _resolve_path(value: str, folder: Path | None, model: bool) -> str:
    """``value`` with ``~`` expanded and, when it came from a settings file in ``folder``, relative to that folder.

    A model named by a hub id (``tinkoff-ai/ruDialoGPT-small``) stays as it is unless the folder holds it.
    """
    path = Path(value).expanduser()
    hub_model = model and is_hub_id(value)
    if folder is None or path.is_absolute() or (hub_model and not (folder / path).exists()):
        return str(path)
    return str(folder / path)


def _check_word_list(path: str) -> None:
    """Fail with one line unless BLOCKED_WORDS names a readable UTF-8 text file."""
    try:
        read_word_list(path)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"BLOCKED_WORDS must be a text file, one word or phrase a line: {path}: {reason}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"BLOCKED_WORDS: {path} is not UTF-8 text (byte {error.start} is not): save it as UTF-8"
        ) from None


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = PROJECT_DIR / ".env",
    config_file: Path | None = PROJECT_DIR / "config.py",
) -> Settings:
    """Build the settings from the environment, ``.env`` and ``config.py``; raise ConfigError if one is bad."""
    # Each raw value with the folder its relative paths start from (None: the current directory).
    sources: dict[str, tuple[str, Path | None]] = {}
    for file, read in ((config_file, _config_file_values), (env_file, _env_file_values)):
        if file is not None:
            sources.update({name: (value, file.resolve().parent) for name, value in read(file).items()})
    sources.update({name: (value, None) for name, value in (os.environ if environ is None else environ).items()})

    values: dict[str, Any] = {}
    for field in fields(Settings):
        raw, folder = sources.get(field.name.upper(), (None, None))
        if raw is None or raw.strip() == "":
            continue
        parse, expected, valid = _PARSERS[field.name]
        try:
            value = parse(raw)
        except ValueError:
            value = None
        if value is None or not valid(value):
            shown = "(hidden)" if field.name in _SECRETS else repr(raw)
            raise ConfigError(f"{field.name.upper()} must be {expected}, got {shown}")
        if field.name in _PATHS and value:
            value = _resolve_path(value, folder, model=field.name in _MODEL_PATHS)
        values[field.name] = value
    if values.get("webhook_url"):
        if not values.get("webhook_secret"):
            raise ConfigError("WEBHOOK_SECRET must be set with WEBHOOK_URL: 1 to 256 of A-Z a-z 0-9 _ -")
        if not values["webhook_url"].startswith("https://") and not values.get("telegram_api_base"):
            raise ConfigError(f"WEBHOOK_URL must be an https:// address for Telegram, got {values['webhook_url']!r}")
    if values.get("backend") == "openai":
        if not values.get("inference_url"):
            raise ConfigError("INFERENCE_URL must be set with BACKEND=openai, e.g. http://gpu-box:8000/v1")
        if values.get("toast_model_path") or values.get("horoscope_model_path"):
            raise ConfigError(
                "with BACKEND=openai the server's model does every task: leave TOAST_MODEL_PATH and "
                "HOROSCOPE_MODEL_PATH empty"
            )
    if values.get("blocked_words"):
        _check_word_list(values["blocked_words"])
    token = values.get("bot_token", "")
    if token and (":" not in token or any(ch.isspace() for ch in token)):
        raise ConfigError("BOT_TOKEN does not look like a bot token (expected digits:letters from @BotFather)")
    return Settings(**values)
