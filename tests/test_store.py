"""The SQLite chat history: order, clearing, persistence, a damaged file and a folder it may not write to."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from store import ChatPreferences, ChatStore, StoreError, Turn

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def open_store():
    """Opens stores for a test and closes every one afterwards, pass or fail."""
    opened: list[ChatStore] = []

    def open_at(path: Path) -> ChatStore:
        opened.append(ChatStore(path))
        return opened[-1]

    yield open_at
    for store in opened:
        store.close()


def test_turns_come_back_in_order_per_chat(open_store, tmp_path: Path) -> None:
    store = open_store(tmp_path / "bot.sqlite3")
    store.add_turns(1, [Turn("u", "a"), Turn("bot", "b")])
    store.add_turns(2, [Turn("u", "other chat")])
    store.add_turns(1, [Turn("u", "c"), Turn("bot", "d")])
    assert [t.text for t in store.recent_turns(1, 3)] == ["b", "c", "d"]
    assert store.recent_turns(2, 10) == [Turn("u", "other chat")]
    store.clear(1)
    assert store.recent_turns(1, 10) == [] and len(store.recent_turns(2, 10)) == 1


def test_history_survives_reopening(open_store, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "bot.sqlite3"
    store = open_store(path)
    store.add_turns(7, [Turn("u", "привет"), Turn("bot", "здравствуй")])
    store.close()
    assert open_store(path).recent_turns(7, 10) == [Turn("u", "привет"), Turn("bot", "здравствуй")]


def test_a_damaged_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"bot\.sqlite3 is damaged .*move it aside"):
        ChatStore(path)
    assert path.read_bytes().startswith(b"this is not a database"), "the file must be left as it was"


def without_root_powers() -> list[str]:
    """A command prefix under which file permissions hold even for root (who ignores them otherwise)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions can't be enforced")
    dropped = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={dropped}", f"--bounding-set={dropped}"]


@pytest.mark.parametrize("where", ["bot.sqlite3", "new/bot.sqlite3"], ids=["in-the-folder", "in-a-new-subfolder"])
def test_a_folder_it_may_not_write_to_is_named_as_a_permission_problem(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    code = (
        "from store import ChatStore, StoreError\n"
        f"try: ChatStore({str(folder / where)!r})\n"
        "except StoreError as error: print(error)"
    )
    try:
        result = subprocess.run(
            [*without_root_powers(), sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert f"no permission to write to {folder}" in result.stdout and "DB_PATH" in result.stdout
    assert "move it aside" not in result.stdout, "its history is fine: moving it aside would lose it"


def test_a_database_made_before_reply_chances_gets_the_column_and_keeps_its_settings(
    open_store, tmp_path: Path
) -> None:
    path = tmp_path / "bot.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE chat_settings (chat_id INTEGER PRIMARY KEY, context_turns INTEGER, style TEXT);"
        "INSERT INTO chat_settings VALUES (-100, 5, 'calm');"
    )
    old.close()
    store = open_store(path)
    assert store.preferences(-100) == ChatPreferences(5, "calm", None)
    store.set_preferences(-100, ChatPreferences(5, "calm", 0.25))
    store.close()
    assert open_store(path).preferences(-100) == ChatPreferences(5, "calm", 0.25), "kept, and opened again as it is"
