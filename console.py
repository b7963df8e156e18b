"""A terminal chat with the generator the bot uses, to try a model (chat, toasts, horoscopes) without Telegram."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable
from dataclasses import replace

import texts
from errors import BusyError, EmptyMessageError, ReplyTimeoutError
from generator import ReplyGenerator
from inference.dialogue import MAX_CONTEXT_TURNS, parse_context_turns
from inference.modes import HOLIDAYS, HOROSCOPE, MAX_HOLIDAY_NAME, TOAST, parse_sign, sign_list
from store import ChatStore

CONSOLE_CHAT_ID = 0
CONSOLE_AUTHOR = "console"
# The exit status of a program ended by Ctrl+C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _use_readline() -> None:
    """Let input() read through readline where Python has it: line editing, history, and no line-length limit.

    Without it a terminal in line mode passes at most 4,095 bytes of a line and silently drops the rest.
    """
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - importing it is what makes input() use it


def _read_line(interactive: bool) -> str | None:
    """The next line without its newline, or None at the end of input; prompts only a terminal."""
    if interactive:
        try:
            return input(texts.CONSOLE_PROMPT)
        except EOFError:
            _write("")
            return None
    line = sys.stdin.readline()
    return line.removesuffix("\n") if line else None


async def _command_answer(line: str, generator: ReplyGenerator, store: ChatStore) -> str:
    """The answer to a console command (a line starting with /)."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name == "/help":
        return texts.CONSOLE_HELP
    if name in ("/start", "/reset"):
        generator.forget(CONSOLE_CHAT_ID)
        return texts.HISTORY_CLEARED
    if name == "/context":
        turns = parse_context_turns(argument)
        if turns is None:
            return texts.CONTEXT_RANGE.format(maximum=MAX_CONTEXT_TURNS)
        store.set_preferences(CONSOLE_CHAT_ID, replace(store.preferences(CONSOLE_CHAT_ID), context_turns=turns))
        return texts.CONTEXT_SET.format(turns=turns, turns_word=texts.plural(turns, texts.LAST_TURNS_WORD))
    if name == "/toast":
        if not argument:
            return texts.CONSOLE_TOAST_USAGE.format(holidays=", ".join(HOLIDAYS.values()))
        holiday = argument[:MAX_HOLIDAY_NAME]
        return await _composed(generator, TOAST, holiday, texts.TOAST_TITLE.format(topic=holiday))
    if name in ("/horoscope", "/generate"):
        sign = parse_sign(argument)
        if sign is None:
            return texts.UNKNOWN_SIGN.format(signs=sign_list())
        title = texts.HOROSCOPE_TITLE.format(symbol=sign.symbol, name=sign.name)
        return await _composed(generator, HOROSCOPE, sign.name, title)
    return texts.CONSOLE_UNKNOWN_COMMAND


async def _composed(generator: ReplyGenerator, task: str, topic: str, title: str) -> str:
    """A toast or horoscope as the console shows it: titled, like the bot's; not a turn of the dialogue."""
    composed = await generator.compose(task, topic)
    return texts.CONSOLE_REPLY.format(text=f"{title}\n{composed.text or texts.CONSOLE_NOTHING_COMPOSED}")


async def _reply(generator: ReplyGenerator, line: str) -> str:
    """The model's reply to a line (the fallback phrase when it had none), kept in the dialogue."""
    reply = await generator.reply(CONSOLE_CHAT_ID, line, CONSOLE_AUTHOR)
    generator.remember(CONSOLE_CHAT_ID, reply)
    return texts.CONSOLE_REPLY.format(text=reply.text or texts.FALLBACK_REPLY)


async def _or_apology(answer: Awaitable[str]) -> str:
    """The answer, or what the bot says instead when it can't generate one."""
    try:
        return await answer
    except EmptyMessageError:
        return texts.CONSOLE_REPLY.format(text=texts.EMPTY_TEXT)
    except ReplyTimeoutError:
        return texts.CONSOLE_REPLY.format(text=texts.TIMEOUT)
    except BusyError:
        return texts.CONSOLE_REPLY.format(text=texts.BUSY)


def run_console(generator: ReplyGenerator, store: ChatStore) -> int:
    """Chat until /exit or the end of input (status 0) or Ctrl+C (status 130, at the prompt or while generating)."""
    interactive = sys.stdin.isatty()
    if interactive:
        _use_readline()
    generator.forget(CONSOLE_CHAT_ID)
    _write(texts.CONSOLE_GREETING)
    with asyncio.Runner() as runner:
        try:
            while (line := _read_line(interactive)) is not None:
                text = line.strip()
                if text == "/exit":
                    break
                if not text:
                    _write(texts.CONSOLE_EMPTY_LINE)
                elif text.startswith("/"):
                    _write(runner.run(_or_apology(_command_answer(text, generator, store))))
                else:
                    _write(runner.run(_or_apology(_reply(generator, line))))
        except KeyboardInterrupt:
            # One Ctrl+C ends the chat; a second one must not break the clean-up (a generation still finishing).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _write("")
            return INTERRUPTED
    return 0
