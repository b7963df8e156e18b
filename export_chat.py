"""Turn a Telegram Desktop chat export (result.json) into a CSV of dialogue windows for train.py.

    python export_chat.py result.json chat.csv

Each row is a reply and up to three turns before it (columns context_3,context_2,context_1,response).
Consecutive messages of one author make one turn; a message that replies to an earlier one continues
that thread instead of the chronological one. Service messages and empty texts (stickers, media
without a caption) are skipped; rows with links and duplicate rows are dropped. A forwarded message
is someone else's words, not its forwarder's: it is left out like a lost turn, so nothing answers it
and it answers nothing. A turn longer than 4,096 characters (one Telegram message) keeps its last
4,096 from a word's start, as train.py keeps the newest tokens of a long context.

``--clean`` also drops the windows whose response has an obscene word (inference/profanity.py), for a
model that doesn't learn to swear; the context may keep them.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from inference.profanity import ProfanityFilter
from training.formats import COLUMNS, MAX_TURN_CHARS

logger = logging.getLogger("export_chat")

CONTEXT_TURNS = 3
_LINK = re.compile(r"https?://|www\.|\bt\.me/|\btelegram\.me/", re.IGNORECASE)
_LINK_ENTITIES = {"link", "text_link"}


class ExportError(ValueError):
    """The export is unreadable or not shaped like a Telegram Desktop export; the message says where."""


@dataclass(frozen=True)
class Message:
    """A text message of the export, reduced to what the windows need."""

    id: int
    author: str
    text: str
    reply_to: int | None = None
    has_link: bool = False
    forwarded: bool = False


@dataclass
class _Turn:
    author: str
    texts: list[str]
    parent: int | None
    has_link: bool

    @property
    def long(self) -> bool:
        return len(" ".join(self.texts)) > MAX_TURN_CHARS

    @property
    def text(self) -> str:
        """The turn's messages as one line, its last MAX_TURN_CHARS from a word's start when longer."""
        joined = " ".join(self.texts)
        if len(joined) <= MAX_TURN_CHARS:
            return joined
        tail = joined[-MAX_TURN_CHARS:]
        return tail[tail.find(" ") + 1 :]  # from the start of a word (all of it when one word fills it)


@dataclass
class ExportStats:
    """Counts of what the export held and what was kept."""

    messages: int = 0
    service: int = 0
    empty: int = 0
    forwarded: int = 0
    long_turns: int = 0
    rows: int = 0
    without_context: int = 0
    with_links: int = 0
    duplicates: int = 0
    chats: int = 0
    obscene: int = 0


def _text(value: object, where: str) -> tuple[str, bool]:
    """A message's ``text`` (a string, or a list of strings and entities) as one line, and whether it links."""
    if isinstance(value, str):
        parts: Iterable[object] = [value]
    elif isinstance(value, list):
        parts = value
    else:
        raise ExportError(f"{where}: 'text' is neither a string nor a list")
    pieces = []
    has_link = False
    for part in parts:
        if isinstance(part, str):
            pieces.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text", ""), str):
            pieces.append(part.get("text", ""))
            has_link = has_link or part.get("type") in _LINK_ENTITIES
        else:
            raise ExportError(f"{where}: a part of 'text' is neither a string nor an entity with a text")
    text = " ".join("".join(pieces).split())
    return text, has_link or bool(_LINK.search(text))


def _optional_int(message: dict, key: str, where: str) -> int | None:
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExportError(f"{where}: '{key}' is not a number")
    return value


def parse_messages(raw: object, where: str, stats: ExportStats) -> Iterator[Message]:
    """The chat's messages in order, without service ones; empty texts (stickers, media) stay, to mark gaps."""
    if not isinstance(raw, list):
        raise ExportError(f"{where}: 'messages' is not a list")
    for index, message in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(message, dict):
            raise ExportError(f"{at}: not an object")
        stats.messages += 1
        if message.get("type", "message") != "message":
            stats.service += 1
            continue
        message_id = _optional_int(message, "id", at)
        if message_id is None:
            raise ExportError(f"{at}: no 'id'")
        at = f"{at} (id {message_id})"
        text, has_link = _text(message.get("text", ""), at)
        forwarded = "forwarded_from" in message
        if forwarded:
            stats.forwarded += 1
        elif not text:
            stats.empty += 1
        author = message.get("from_id") or message.get("from") or ""
        reply_to = _optional_int(message, "reply_to_message_id", at)
        yield Message(message_id, str(author), text, reply_to, has_link, forwarded)


def build_turns(messages: Iterable[Message]) -> list[_Turn]:
    """Merge consecutive messages of one author into turns, each linked to the turn it answers.

    A turn answers the turn its first message replies to (when that is another author's), else the
    turn just before it. Empty messages are skipped, but one from another author is a turn we lost:
    the next turn, unless it is a reply, answers nothing. A forwarded message is always such a lost
    turn, whoever forwarded it.
    """
    turns: list[_Turn] = []
    turn_of: dict[int, int] = {}
    gap = False
    for message in messages:
        if message.forwarded:
            gap = True
            continue
        if not message.text:
            if turns and turns[-1].author != message.author:
                gap = True
            continue
        target = turn_of.get(message.reply_to) if message.reply_to is not None else None
        if target is not None and turns[target].author == message.author:
            target = None  # a reply to oneself answers nobody: follow the chronological thread
        last = len(turns) - 1
        replies_elsewhere = target is not None and target != last
        if turns and not gap and turns[last].author == message.author and not replies_elsewhere:
            turn = turns[last]
            turn.texts.append(message.text)
            turn.has_link = turn.has_link or message.has_link
        else:
            if target is not None:
                parent = target
            elif message.reply_to is not None and message.reply_to not in turn_of:
                parent = None  # it replies to something dropped or not in the export: context unknown
            elif turns and not gap and turns[last].author != message.author:
                parent = last
            else:
                parent = None
            turns.append(_Turn(message.author, [message.text], parent, message.has_link))
        turn_of[message.id] = len(turns) - 1
        gap = False
    return turns


def windows(turns: list[_Turn], stats: ExportStats) -> Iterator[tuple[str, str, str, str]]:
    """Rows (context_3, context_2, context_1, response) of the turns that answer another turn."""
    for turn in turns:
        chain = []
        parent = turn.parent
        while parent is not None and len(chain) < CONTEXT_TURNS:
            chain.append(turns[parent])
            parent = turns[parent].parent
        if not chain:
            stats.without_context += 1
            continue
        if turn.has_link or any(t.has_link for t in chain):
            stats.with_links += 1
            continue
        context = [t.text for t in reversed(chain)]
        yield (*[""] * (CONTEXT_TURNS - len(context)), *context, turn.text)


def _chats(data: object, path: Path) -> list[tuple[str, object]]:
    """(where, messages) of each chat: a single-chat export, or every chat of a full-account export."""
    if isinstance(data, dict) and "messages" in data:
        return [(f"{path}: messages", data["messages"])]
    chats = data.get("chats") if isinstance(data, dict) else None
    chat_list = chats.get("list") if isinstance(chats, dict) else None
    if not isinstance(chat_list, list):
        raise ExportError(f"{path}: no 'messages' list: is this a Telegram Desktop JSON export (result.json)?")
    found = []
    for index, chat in enumerate(chat_list):
        if not isinstance(chat, dict) or "messages" not in chat:
            raise ExportError(f"{path}: chats.list[{index}] has no 'messages'")
        found.append((f"{path}: chats.list[{index}].messages", chat["messages"]))
    return found


def export(result_json: Path, out_csv: Path, *, clean: bool = False) -> ExportStats:
    """Read a Telegram Desktop export and write its dialogue windows as CSV; returns the counts.

    ``clean`` drops the windows whose response has an obscene word.
    """
    out, source = Path(out_csv), Path(result_json)
    if out.resolve() == source.resolve() or (out.exists() and source.exists() and out.samefile(source)):
        raise ExportError(f"{out_csv}: that is the export itself: name another file for the CSV")
    try:
        data = json.loads(Path(result_json).read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise ExportError(f"{result_json}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ExportError(f"{result_json}: not UTF-8 text (bad byte at offset {error.start})") from None
    except json.JSONDecodeError as error:
        raise ExportError(f"{result_json}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    stats = ExportStats()
    profanity = ProfanityFilter() if clean else None
    rows: dict[tuple[str, str, str, str], None] = {}
    for where, messages in _chats(data, Path(result_json)):
        stats.chats += 1
        turns = build_turns(parse_messages(messages, where, stats))
        stats.long_turns += sum(turn.long for turn in turns)
        for row in windows(turns, stats):
            if profanity is not None and profanity.contains(row[-1]):
                stats.obscene += 1
                continue
            if row in rows:
                stats.duplicates += 1
            rows[row] = None
    if not rows:
        raise ExportError(
            f"{result_json}: no messages in the export"
            if not stats.messages
            else f"{result_json}: no dialogue to write: --clean dropped all {stats.obscene} windows (obscene responses)"
            if stats.obscene
            else f"{result_json}: no dialogue to write: none of its {stats.messages} messages answers another "
            f"author's text message (without links)"
        )
    try:
        with Path(out_csv).open("w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    except OSError as error:
        raise ExportError(f"{out_csv}: cannot write: {error.strerror or error}") from None
    stats.rows = len(rows)
    return stats


def main(argv: list[str] | None = None) -> int:
    """Export and log what was kept and dropped; returns the exit status."""
    parser = argparse.ArgumentParser(description="Telegram Desktop export (result.json) to a CSV for train.py")
    parser.add_argument("result_json", type=Path, help="the export (Telegram Desktop: Export chat history, JSON)")
    parser.add_argument("out_csv", type=Path, help="the CSV to write (context_3,context_2,context_1,response)")
    parser.add_argument("--clean", action="store_true", help="drop the windows whose response has an obscene word")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        stats = export(args.result_json, args.out_csv, clean=args.clean)
    except ExportError as error:
        sys.stderr.write(f"export_chat.py: {error}\n")
        return 2
    logger.info(
        "%d messages in %d chat(s): %d service, %d empty and %d forwarded skipped; %d turns cut to their last %d "
        "characters; wrote %d rows to %s (dropped %d without context, %d with links, %d duplicates%s)",
        stats.messages,
        stats.chats,
        stats.service,
        stats.empty,
        stats.forwarded,
        stats.long_turns,
        MAX_TURN_CHARS,
        stats.rows,
        args.out_csv,
        stats.without_context,
        stats.with_links,
        stats.duplicates,
        f", {stats.obscene} with obscene words in the response" if args.clean else "",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
