"""The console chat (``python main.py --console``): piped and in a terminal, its commands, and Ctrl+C."""

from __future__ import annotations

import codecs
import os
import platform
import pty
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from botprocess import bot_env, main_command

import texts
from console import CONSOLE_AUTHOR, CONSOLE_CHAT_ID, INTERRUPTED
from inference.modes import sign_list


def run_piped(tmp_path: Path, model_dir: Path, stdin: str, **settings: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        main_command(tmp_path, "--console"),
        cwd=tmp_path,
        env=bot_env(model_path=model_dir, db_path=tmp_path / "db.sqlite3", **settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def stored_turns(tmp_path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        query = "SELECT author, text FROM turns WHERE chat_id = ? ORDER BY id"
        return db.execute(query, (CONSOLE_CHAT_ID,)).fetchall()
    finally:
        db.close()


# The system calls (Linux numbers, by machine) a console blocks in: readline waiting for keys, the event loop waiting.
WAITS = {
    "x86_64": {"keys": {7, 23, 270, 271}, "loop": {232, 281, 441}},  # poll select pselect6 ppoll; epoll_*wait*
    "aarch64": {"keys": {72, 73}, "loop": {22, 441}},  # pselect6 ppoll; epoll_pwait epoll_pwait2
}


def wait_until_blocked(process: subprocess.Popen, kind: str, timeout: float = 60) -> None:
    """Wait until the process's main thread sleeps in one of the ``kind`` system calls (from /proc/PID/syscall)."""
    numbers = WAITS.get(platform.machine(), {}).get(kind)
    deadline = time.monotonic() + timeout
    while True:
        try:
            current = Path(f"/proc/{process.pid}/syscall").read_text().split()
        except OSError:
            current = None
        if numbers is None or current is None:
            pytest.skip("needs Linux's /proc/PID/syscall to see where the console waits")
        if current[0].isdigit() and int(current[0]) in numbers:
            return
        assert time.monotonic() < deadline and process.poll() is None, f"not blocked in a {kind} wait: {current}"
        time.sleep(0.01)


class Terminal:
    """``main.py --console`` on a pseudo-terminal, as a person at a keyboard runs it."""

    def __init__(self, tmp_path: Path, model_dir: Path, gate: Path | None = None, **settings: object) -> None:
        self._main, child = pty.openpty()
        self.process = subprocess.Popen(
            main_command(tmp_path, "--console", gate=gate),
            cwd=tmp_path,
            stdin=child,
            stdout=child,
            stderr=subprocess.PIPE,
            env=bot_env(model_path=model_dir, db_path=tmp_path / "db.sqlite3", **settings),
        )
        os.close(child)
        self.output = ""
        self._seen = 0
        # A read can end inside a character: decode across reads.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def type(self, text: str) -> None:
        os.write(self._main, text.encode())

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Read the screen until ``text`` appears after the last text waited for."""
        deadline = time.monotonic() + timeout
        while (found := self.output.find(text, self._seen)) < 0:
            assert time.monotonic() < deadline and self.process.poll() is None, f"no {text!r} in {self.output!r}"
            if select.select([self._main], [], [], 0.1)[0]:
                self.output += self._decoder.decode(os.read(self._main, 65536))
        self._seen = found + len(text)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """The exit status and what went to stderr."""
        status = self.process.wait(timeout)
        return status, self.process.stderr.read().decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process.stderr.close()
        os.close(self._main)


@pytest.fixture
def terminal(tmp_path: Path):
    opened: list[Terminal] = []

    def open_terminal(model_dir: Path, **settings: object) -> Terminal:
        opened.append(Terminal(tmp_path, model_dir, **settings))
        return opened[-1]

    yield open_terminal
    for each in opened:
        each.close()


def test_piped_lines_are_answered_one_by_one_and_commands_are_not_sent_to_the_model(
    tmp_path: Path, answering_model_dir: Path
) -> None:
    lines = ["привет", "", "/help", "/context 5", "/context 50", "/start", "/settings", "@@ПЕРВЫЙ@@", "как дела?"]
    result = run_piped(tmp_path, answering_model_dir, "\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert texts.CONSOLE_PROMPT not in result.stdout, "no prompt when nobody types"
    assert "--console" not in result.stderr, "no advice to run what is running"
    out = result.stdout
    for expected in (
        texts.CONSOLE_GREETING,
        texts.CONSOLE_EMPTY_LINE,
        texts.CONSOLE_HELP,
        "Теперь я учитываю 5 последних реплик.",
        texts.CONTEXT_RANGE.format(maximum=10),
        texts.HISTORY_CLEARED,
        texts.CONSOLE_UNKNOWN_COMMAND,
        texts.CONSOLE_REPLY.format(text=texts.EMPTY_TEXT),
    ):
        assert expected in out
    replies = [line.removeprefix("бот> ") for line in out.splitlines() if line.startswith("бот> ")]
    assert len(replies) == 3 and replies[1] == texts.EMPTY_TEXT
    # /start forgot the first exchange; only the model saw text, never a command.
    assert stored_turns(tmp_path) == [(CONSOLE_AUTHOR, "как дела?"), ("bot", replies[2])]
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        chosen = db.execute("SELECT context_turns FROM chat_settings WHERE chat_id = ?", (CONSOLE_CHAT_ID,))
        assert chosen.fetchone() == (5,)
    finally:
        db.close()


def test_a_model_with_nothing_to_say_gets_the_fallback_phrase(tmp_path: Path, silent_model_dir: Path) -> None:
    # float32: CTranslate2's int8 weights take the tiny silent model's certainty away (log P(end) -4.9, not 0).
    result = run_piped(tmp_path, silent_model_dir, "привет\n", dtype="float32")
    assert result.returncode == 0, result.stderr
    assert texts.CONSOLE_REPLY.format(text=texts.FALLBACK_REPLY) in result.stdout.splitlines()


def test_one_ctrl_c_at_the_prompt_ends_the_chat_quietly(terminal, answering_model_dir: Path) -> None:
    console = terminal(answering_model_dir)
    console.wait_for(texts.CONSOLE_PROMPT)
    console.type("привет\n")
    console.wait_for("бот> ")
    console.wait_for(texts.CONSOLE_PROMPT)
    # readline prints the prompt just before it waits for keys (a Ctrl+C between the two would go unseen until a
    # key came); a person's Ctrl+C comes once it waits.
    wait_until_blocked(console.process, "keys")
    console.process.send_signal(signal.SIGINT)
    status, errors = console.finish()
    assert status == INTERRUPTED and "Traceback" not in errors and "KeyboardInterrupt" not in errors


def test_one_ctrl_c_while_a_reply_is_on_its_way_ends_the_chat_quietly(
    terminal, tmp_path: Path, answering_model_dir: Path
) -> None:
    # The reply is held at a gate the test never opens (tests/gated_main.py): the interrupt comes while it is on its
    # way, however slow the machine.
    console = terminal(answering_model_dir, gate=tmp_path / "gate")
    console.wait_for(texts.CONSOLE_PROMPT)
    console.type("привет\n")
    console.wait_for("привет")
    wait_until_blocked(console.process, "loop")  # the line was read: the event loop waits for the reply
    console.process.send_signal(signal.SIGINT)
    status, errors = console.finish()
    assert "бот> " not in console.output, "the reply came before the interrupt: nothing was tested"
    assert status == INTERRUPTED and "Traceback" not in errors and "KeyboardInterrupt" not in errors


def test_a_line_longer_than_the_terminals_line_buffer_arrives_whole(
    terminal, tmp_path: Path, answering_model_dir: Path
) -> None:
    long_line = " ".join(["слово"] * 700)  # 8,399 bytes: twice what a terminal in line mode passes on
    console = terminal(answering_model_dir)
    console.wait_for(texts.CONSOLE_PROMPT)
    for start in range(0, len(long_line), 500):
        console.type(long_line[start : start + 500])
    console.type("\n")
    console.wait_for("бот> ")
    console.type("/exit\n")
    status, errors = console.finish()
    assert status == 0, errors
    [(author, text), _] = stored_turns(tmp_path)
    assert author == CONSOLE_AUTHOR and text == long_line


def test_toasts_and_horoscopes_come_from_their_models_and_stay_out_of_the_dialogue(
    tmp_path: Path, silent_model_dir: Path, answering_model_dir: Path
) -> None:
    # The chat model never has anything to say: a toast or horoscope that has words came from its own model.
    lines = ["/help", "/toast День космонавтики", "/toast", "/horoscope ЛЕВ", "/horoscope змееносец", "/horoscope"]
    result = run_piped(
        tmp_path,
        silent_model_dir,
        "\n".join([*lines, "привет"]) + "\n",
        toast_model_path=answering_model_dir,
        horoscope_model_path=answering_model_dir,
        dtype="float32",  # see test_a_model_with_nothing_to_say_gets_the_fallback_phrase
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert "/toast праздник" in result.stdout and "/horoscope знак" in result.stdout, "/help lists them"
    toast = out.index("бот> 🥂 День космонавтики")
    horoscope = out.index("бот> ♌ Лев")
    for text in (out[toast + 1], out[horoscope + 1]):
        assert text.strip() and text != texts.CONSOLE_NOTHING_COMPOSED and not text.startswith("бот> ")
    usage = texts.CONSOLE_TOAST_USAGE.format(holidays="Новый год, День рождения, 23 февраля, 8 марта, Свадьба")
    assert usage in out
    assert out.count(texts.UNKNOWN_SIGN.format(signs=sign_list())) == 2, "an unknown sign and none list the signs"
    assert out[-1] == texts.CONSOLE_REPLY.format(text=texts.FALLBACK_REPLY)
    assert stored_turns(tmp_path) == [], "toasts and horoscopes are not turns of the dialogue"
