"""The SQLite chat history: order, clearing, persistence and a damaged file."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import ChatStore, StoreError, Turn


def test_turns_come_back_in_order_per_chat(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "bot.sqlite3")
    store.add_turns(1, [Turn("u", "a"), Turn("bot", "b")])
    store.add_turns(2, [Turn("u", "other chat")])
    store.add_turns(1, [Turn("u", "c"), Turn("bot", "d")])
    assert [t.text for t in store.recent_turns(1, 3)] == ["b", "c", "d"]
    assert store.recent_turns(2, 10) == [Turn("u", "other chat")]
    store.clear(1)
    assert store.recent_turns(1, 10) == [] and len(store.recent_turns(2, 10)) == 1


def test_history_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "bot.sqlite3"
    store = ChatStore(path)
    store.add_turns(7, [Turn("u", "привет"), Turn("bot", "здравствуй")])
    store.close()
    assert ChatStore(path).recent_turns(7, 10) == [Turn("u", "привет"), Turn("bot", "здравствуй")]


def test_a_damaged_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"bot\.sqlite3"):
        ChatStore(path)
    assert path.read_bytes().startswith(b"this is not a database"), "the file must be left as it was"
