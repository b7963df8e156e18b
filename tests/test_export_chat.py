"""The Telegram export to CSV converter, on exports the tests write."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import export_chat
from training import formats

ROOT = Path(__file__).resolve().parent.parent


def message(id_: int, author: str, text: object, **extra: object) -> dict:
    base = {"id": id_, "type": "message", "date": "2024-01-01T12:00:00", "from": author, "from_id": author}
    return {**base, "text": text, **extra}


def sticker(id_: int, author: str) -> dict:
    return message(id_, author, "", media_type="sticker", sticker_emoji="😀")


CHAT = [
    message(1, "alice", "Привет"),
    message(2, "alice", "как дела?"),
    {"id": 3, "type": "service", "actor": "alice", "action": "pin_message", "text": ""},
    message(4, "bob", "Нормально"),
    sticker(5, "bob"),  # the same author's sticker does not split bob's turn
    message(6, "bob", "а ты?"),
    message(7, "alice", ["Тоже ", {"type": "bold", "text": "хорошо"}]),
    message(8, "carol", "я про  море\nчитала"),
    message(9, "bob", "отвечаю на вопрос", reply_to_message_id=2),
    message(10, "alice", "ясно"),
    message(11, "carol", ["смотри ", {"type": "text_link", "text": "тут", "href": "https://example.com"}]),
    message(12, "alice", "класс"),
    sticker(13, "bob"),  # another author's sticker is a lost turn: what follows answers nothing
    message(14, "alice", "что это?"),
    message(15, "bob", "кот"),
    message(16, "carol", "а вот www.example.com"),
    sticker(17, "dave"),
    message(18, "alice", "ку"),
    message(19, "bob", "ку"),
    sticker(20, "dave"),
    message(21, "alice", "ку"),
    message(22, "bob", "ку"),
    message(23, "carol", "ответ на фото", reply_to_message_id=13),
]

EXPECTED = [
    ("", "", "Привет как дела?", "Нормально а ты?"),
    ("", "Привет как дела?", "Нормально а ты?", "Тоже хорошо"),
    ("Привет как дела?", "Нормально а ты?", "Тоже хорошо", "я про море читала"),
    # bob's reply to message 2 continues that thread, not the chronological one
    ("", "", "Привет как дела?", "отвечаю на вопрос"),
    ("", "Привет как дела?", "отвечаю на вопрос", "ясно"),
    ("", "", "что это?", "кот"),
    ("", "", "ку", "ку"),
]


def write_export(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def read_rows(path: Path) -> list[tuple[str, ...]]:
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.reader(file)
        assert tuple(next(reader)) == export_chat.COLUMNS
        return [tuple(row) for row in reader]


def test_export_follows_threads_merges_turns_and_drops_noise(tmp_path: Path) -> None:
    export = write_export(tmp_path / "result.json", {"name": "Чат", "type": "private_group", "messages": CHAT})
    stats = export_chat.export([export], tmp_path / "chat.csv")
    assert read_rows(tmp_path / "chat.csv") == EXPECTED
    assert stats.rows == len(EXPECTED)
    assert stats.service == 1
    assert stats.empty == 4
    assert stats.duplicates == 1
    # carol's link turn, alice's answer to it, and the turn after www.example.com
    assert stats.with_links == 3
    assert stats.messages == len(CHAT)


def test_full_account_export_reads_every_chat(tmp_path: Path) -> None:
    chats = {"chats": {"list": [{"messages": CHAT[:6]}, {"messages": [message(1, "x", "да"), message(2, "y", "нет")]}]}}
    stats = export_chat.export([write_export(tmp_path / "result.json", chats)], tmp_path / "chat.csv")
    assert stats.chats == 2
    assert read_rows(tmp_path / "chat.csv") == [EXPECTED[0], ("", "", "да", "нет")]


def test_the_csv_feeds_the_trainer(tmp_path: Path) -> None:
    export_chat.export([write_export(tmp_path / "result.json", {"messages": CHAT})], tmp_path / "chat.csv")
    read = formats.read_rows(tmp_path / "chat.csv")
    assert read.incomplete == 0
    assert read.dialogues[2] == formats.Dialogue(
        ("Привет как дела?", "Нормально а ты?", "Тоже хорошо"), "я про море читала"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("{not json", "not JSON (line 1, column 2"),
        ('{"name": "x"}', "neither one chat's export (a 'messages' list) nor a whole account's (chats.list)"),
        ('{"messages": {}}', "'messages' is not a list"),
        ('{"messages": [{"id": 1, "type": "message", "text": 5}]}', "messages[0] (id 1): 'text' is neither"),
        ('{"messages": [{"type": "message", "text": "a"}]}', "messages[0]: no 'id'"),
        ('{"messages": [{"id": 1, "text": "a", "reply_to_message_id": "2"}]}', "'reply_to_message_id' is not a number"),
        ('{"messages": []}', "no messages in the export"),
        ('{"chats": {"list": []}}', "no messages in the export"),
        (
            '{"messages": [{"id": 1, "text": "a", "from": "x"}, {"id": 2, "text": "b", "from": "x"}]}',
            "no dialogue to write: none of its 2 messages answers another author's",
        ),
    ],
)
def test_bad_export_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture, content, expected) -> None:
    export = tmp_path / "result.json"
    if content is not None:
        export.write_text(content, encoding="utf-8")
    assert export_chat.main([str(export), str(tmp_path / "chat.csv")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert str(export) in error and expected in error


def test_command_line(tmp_path: Path) -> None:
    export = write_export(tmp_path / "result.json", {"messages": CHAT})
    done = subprocess.run(
        [sys.executable, str(ROOT / "export_chat.py"), str(export), str(tmp_path / "chat.csv")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 7 rows" in done.stderr
    assert len(read_rows(tmp_path / "chat.csv")) == 7
    bad = subprocess.run(
        [sys.executable, str(ROOT / "export_chat.py"), str(tmp_path / "missing.json"), str(tmp_path / "x.csv")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "missing.json: cannot read" in bad.stderr


def test_the_output_is_never_the_export_itself(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    export = write_export(tmp_path / "result.json", {"messages": CHAT})
    original = export.read_bytes()
    (tmp_path / "link.json").symlink_to(export)
    for out in (export, tmp_path / "." / "result.json", tmp_path / "link.json"):
        assert export_chat.main([str(export), str(out)]) == 2
        error = capsys.readouterr().err
        assert error == f"export_chat.py: {out}: that is the export itself: name another file for the CSV\n"
    assert export.read_bytes() == original


def test_forwarded_messages_are_nobodys_turn(tmp_path: Path) -> None:
    """A forward is someone else's words: not its forwarder's turn, and not a turn that is answered."""
    chat = [
        message(1, "alice", "Привет"),
        message(2, "bob", "Смотри, что пишут", forwarded_from="Новости"),
        message(3, "alice", "Ого"),
        message(4, "bob", "Вот-вот"),
        message(5, "bob", "Переслал", forwarded_from="Канал"),
        message(6, "bob", "и ещё"),
        message(7, "alice", "понятно"),
    ]
    stats = export_chat.export([write_export(tmp_path / "result.json", {"messages": chat})], tmp_path / "chat.csv")
    assert read_rows(tmp_path / "chat.csv") == [("", "", "Ого", "Вот-вот"), ("", "", "и ещё", "понятно")]
    assert stats.forwarded == 2 and stats.empty == 0


def test_long_turns_are_cut_so_the_trainer_reads_the_csv(tmp_path: Path) -> None:
    """One author's 40 long messages in a row, one huge message: the CSV stays within any csv reader's limit."""
    long_text = ("слово " * 580).strip()  # 3,479 characters; 40 of them make 139k, past csv's limit of 131,072
    chat = [message(i, "alice", f"{i} {long_text}") for i in range(1, 41)]
    chat += [message(41, "bob", "ну и ну"), message(42, "alice", "огромное " * 30_000), message(43, "bob", "ого")]
    stats = export_chat.export([write_export(tmp_path / "result.json", {"messages": chat})], tmp_path / "chat.csv")
    rows = read_rows(tmp_path / "chat.csv")  # csv's default field limit (131,072 characters)
    assert stats.long_turns == 2 and len(rows) == 3
    longest = max(len(cell) for row in rows for cell in row)
    assert longest <= formats.MAX_TURN_CHARS
    assert rows[0][2].endswith(long_text) and rows[0][2].startswith("слово")  # the newest words, from a word's start
    assert rows[2][2].startswith("огромное") and rows[2][3] == "ого"
    read = formats.read_rows(tmp_path / "chat.csv")
    assert [d.response for d in read.dialogues] == ["ну и ну", rows[1][3], "ого"]


# --- several exports, a whole account's, and one author's voice --------------------------------------------

ANYA, BORYA, VIKA = ("user1", "Аня"), ("user2", "Боря"), ("user3", "Вика")
SASHA, OTHER_SASHA, DIMA = ("user4", "Саша"), ("user5", "саша"), ("user6", "Дима")


def said(id_: int, who: tuple[str, str], text: object, **extra: object) -> dict:
    return {"id": id_, "type": "message", "date": "2024-01-01T12:00:00", "from": who[1], "from_id": who[0]} | {
        "text": text,
        **extra,
    }


# A private chat of the account's owner (Аня) with Боря, and a group where two people are called Саша.
PERSONAL = [
    said(1, ANYA, "привет, как ты?"),
    said(2, BORYA, "хорошо"),
    said(3, BORYA, "а ты?"),
    said(4, ANYA, "тоже"),
    said(5, BORYA, "отлично"),
]
GROUP_CHAT = [
    said(1, VIKA, "кто идёт в кино?"),
    said(2, ANYA, "я иду"),
    said(3, SASHA, "и я"),
    said(4, BORYA, "а я нет"),
    said(5, OTHER_SASHA, "почему?", reply_to_message_id=4),
    said(6, BORYA, "дела"),
    {**said(7, DIMA, ""), "media_type": "sticker"},
    said(8, VIKA, "жаль"),
]
BORYA_ROWS = [
    ("", "", "привет, как ты?", "хорошо а ты?"),
    ("привет, как ты?", "хорошо а ты?", "тоже", "отлично"),
    ("кто идёт в кино?", "я иду", "и я", "а я нет"),
    ("и я", "а я нет", "почему?", "дела"),
]
ANYA_ROWS = [("", "привет, как ты?", "хорошо а ты?", "тоже"), ("", "", "кто идёт в кино?", "я иду")]


def account_export(path: Path, *chats: list[dict], owner: int = 1) -> Path:
    listed = [{"name": f"чат {i}", "type": "private_group", "id": i, "messages": chat} for i, chat in enumerate(chats)]
    data = {"personal_information": {"user_id": owner, "first_name": "Аня"}, "chats": {"about": "", "list": listed}}
    return write_export(path, data)


@pytest.mark.parametrize("who", ["user2", "USER2", "2", "Боря", "  боря "])
def test_only_the_authors_turns_are_responses_and_anyones_are_context(tmp_path: Path, who: str) -> None:
    export = account_export(tmp_path / "result.json", PERSONAL, GROUP_CHAT)
    stats = export_chat.export([export], tmp_path / "chat.csv", author=who)
    assert read_rows(tmp_path / "chat.csv") == BORYA_ROWS
    # The other authors' windows: Аня's two, Саша's and the other Саша's in the group, and none of Вика's (a gap).
    assert stats.other_authors == 4 and stats.rows == 4 and stats.chats == 2


def test_without_an_author_every_window_is_written(tmp_path: Path) -> None:
    export = account_export(tmp_path / "result.json", PERSONAL, GROUP_CHAT)
    stats = export_chat.export([export], tmp_path / "chat.csv")
    rows = read_rows(tmp_path / "chat.csv")
    assert set(BORYA_ROWS + ANYA_ROWS) <= set(rows) and len(rows) == 8 and stats.other_authors == 0


def test_me_is_the_owner_of_the_accounts_export(tmp_path: Path) -> None:
    export = account_export(tmp_path / "result.json", PERSONAL, GROUP_CHAT)
    export_chat.export([export], tmp_path / "chat.csv", author="me")
    assert read_rows(tmp_path / "chat.csv") == ANYA_ROWS


def test_several_exports_are_read_and_a_window_never_spans_two_chats(tmp_path: Path) -> None:
    # Each chat ends with the author the next one starts with: joined, the turns would merge and answer each other.
    first = [said(1, ANYA, "а"), said(2, BORYA, "б")]
    second = [said(1, BORYA, "в"), said(2, ANYA, "г")]
    one_chat = write_export(tmp_path / "one.json", {"messages": [said(1, VIKA, "д"), said(2, ANYA, "е")]})
    account = account_export(tmp_path / "account.json", first, second)
    stats = export_chat.export([account, one_chat], tmp_path / "chat.csv")
    assert read_rows(tmp_path / "chat.csv") == [("", "", "а", "б"), ("", "", "в", "г"), ("", "", "д", "е")]
    assert stats.chats == 3 and stats.without_context == 3
    export_chat.export([account, one_chat], tmp_path / "anya.csv", author="Аня")
    assert read_rows(tmp_path / "anya.csv") == [("", "", "в", "г"), ("", "", "д", "е")]


def test_chats_the_owner_left_are_read_too(tmp_path: Path) -> None:
    data = {
        "personal_information": {"user_id": 1},
        "chats": {"list": [{"messages": PERSONAL}]},
        "left_chats": {"list": [{"messages": GROUP_CHAT}]},
    }
    export_chat.export([write_export(tmp_path / "result.json", data)], tmp_path / "chat.csv", author="me")
    assert read_rows(tmp_path / "chat.csv") == ANYA_ROWS


def run_main(tmp_path: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    status = export_chat.main([str(tmp_path / "result.json"), *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("саша", "--author саша: 2 authors have that name (user4 (Саша): 1 message, user5 (саша): 1 message): pass"),
        ("Вики", "--author Вики: nobody of that name or id in these exports; did you mean user3 (Вика)?"),
        ("user33", "--author user33: nobody of that name or id in these exports; did you mean user3 (Вика)?"),
        ("Зоя", "--author Зоя: nobody of that name or id in these exports; --list-authors lists who wrote in them"),
        ("Дима", "--author Дима: user6 (Дима) has no text messages in these exports"),
    ],
    ids=["ambiguous-name", "close-name", "close-id", "nobody-close", "no-text-messages"],
)
def test_an_author_that_cant_be_used_is_one_line_and_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, who: str, expected: str
) -> None:
    account_export(tmp_path / "result.json", PERSONAL, GROUP_CHAT)
    status, out, err = run_main(tmp_path, capsys, str(tmp_path / "chat.csv"), "--author", who)
    assert status == 2 and out == ""
    assert err.startswith(f"export_chat.py: {expected}") and err.count("\n") == 1
    assert not (tmp_path / "chat.csv").exists()


def test_me_in_one_chats_export_says_what_to_pass_instead(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_export(tmp_path / "result.json", {"messages": GROUP_CHAT})
    status, _, err = run_main(tmp_path, capsys, str(tmp_path / "chat.csv"), "--author", "me")
    assert status == 2 and err.count("\n") == 1 and not (tmp_path / "chat.csv").exists()
    assert "needs the whole account's export" in err
    assert "pass your id or name instead: user2 (Боря): 2 messages, user3 (Вика): 2 messages, user1 (Аня)" in err


def test_me_in_two_accounts_exports_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    account_export(tmp_path / "result.json", PERSONAL)
    other = account_export(tmp_path / "other.json", GROUP_CHAT, owner=3)
    status = export_chat.main([str(tmp_path / "result.json"), str(other), str(tmp_path / "chat.csv"), "--author", "me"])
    assert status == 2 and "these exports are of 2 accounts (user1, user3)" in capsys.readouterr().err


def test_list_authors_prints_ids_names_and_counts_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    account_export(tmp_path / "result.json", PERSONAL, GROUP_CHAT)
    status, out, _ = run_main(tmp_path, capsys, "--list-authors")
    assert status == 0
    assert [line.split() for line in out.splitlines()] == [
        ["id", "messages", "name"],
        ["user2", "5", "Боря"],
        ["user1", "3", "Аня"],
        ["user3", "2", "Вика"],
        ["user4", "1", "Саша"],
        ["user5", "1", "саша"],
        ["user6", "0", "Дима"],
        ["--author", "me", "is", "user1,", "the", "owner", "of", "the", "account's", "export"],
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.json"]


def test_the_log_counts_the_windows_left_to_other_authors(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    account_export(tmp_path / "result.json", PERSONAL, GROUP_CHAT)
    with caplog.at_level("INFO", logger="export_chat"):
        assert run_main(tmp_path, capsys, str(tmp_path / "chat.csv"), "--author", "Боря")[0] == 0
    [line] = [record.getMessage() for record in caplog.records]
    assert "in 2 chat(s)" in line and "wrote 4 rows" in line and "4 answered by other authors" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--list-authors", "--author", "me"], "leave out --author"), ([], "name the CSV to write after the export")],
)
def test_the_command_line_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], expected: str
) -> None:
    account_export(tmp_path / "result.json", PERSONAL)
    with pytest.raises(SystemExit) as exited:
        export_chat.main([str(tmp_path / "result.json"), *args])
    assert exited.value.code == 2 and expected in capsys.readouterr().err


def test_clean_drops_the_windows_whose_response_swears(tmp_path: Path) -> None:
    chat = [
        message(1, "alice", "как дела?"),
        message(2, "bob", "да ну нахуй"),
        message(3, "alice", "что за х.у.й.н.я?"),
        message(4, "bob", "хлебать не перехлебать, скипидар"),  # ordinary words with obscene letters inside
        message(5, "carol", "Бл@ть"),
    ]
    export = write_export(tmp_path / "result.json", {"messages": chat})
    plain = export_chat.export([export], tmp_path / "all.csv")
    assert (plain.rows, plain.obscene) == (4, 0)
    stats = export_chat.export([export], tmp_path / "clean.csv", clean=True)
    assert (stats.rows, stats.obscene) == (1, 3)
    # Obscene words may stay in the context: the model learns not to answer in kind.
    assert read_rows(tmp_path / "clean.csv") == [
        ("как дела?", "да ну нахуй", "что за х.у.й.н.я?", "хлебать не перехлебать, скипидар")
    ]
    done = subprocess.run(
        [sys.executable, str(ROOT / "export_chat.py"), str(export), str(tmp_path / "cli.csv"), "--clean"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 1 rows" in done.stderr and "0 duplicates, 3 with obscene words in the response)" in done.stderr
    only_obscene = write_export(tmp_path / "obscene.json", {"messages": chat[:2]})
    with pytest.raises(export_chat.ExportError, match="--clean dropped all 1 windows"):
        export_chat.export([only_obscene], tmp_path / "none.csv", clean=True)
