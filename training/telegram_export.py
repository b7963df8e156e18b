"""Reading Telegram Desktop's JSON exports into turns and dialogue windows (no third-party packages).

An export is one chat's ``result.json`` (its ``messages``) or a whole account's (every chat under
``chats.list`` and ``left_chats.list``, and the account's owner in ``personal_information.user_id``).
Consecutive messages of one author make one turn; a message that replies to an earlier one continues
that thread instead of the chronological one. A window never spans two chats. export_chat.py writes
the windows as the CSV train.py reads.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from training.formats import MAX_TURN_CHARS

CONTEXT_TURNS = 3
_LINK = re.compile(r"https?://|www\.|\bt\.me/|\btelegram\.me/", re.IGNORECASE)
_LINK_ENTITIES = {"link", "text_link"}
# Where a whole account's export keeps its chats: the ones the owner is in, and the ones they left.
_CHAT_LISTS = ("chats", "left_chats")

Row = tuple[str, str, str, str]


class ExportError(ValueError):
    """The export is unreadable or not shaped like a Telegram Desktop export; the message says where."""


@dataclass(frozen=True)
class Message:
    """A message of the export, reduced to what the windows need; ``text`` is "" for stickers and media."""

    id: int
    author: str
    text: str
    reply_to: int | None = None
    has_link: bool = False
    forwarded: bool = False
    name: str = ""


@dataclass
class Turn:
    """Consecutive messages of one author, and the turn they answer (an index into the chat's turns)."""

    author: str
    texts: list[str]
    parent: int | None
    has_link: bool

    @property
    def long(self) -> bool:
        """Whether the turn is longer than one Telegram message, so ``text`` cuts it."""
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
    """Counts of what the exports held and what was kept."""

    messages: int = 0
    service: int = 0
    empty: int = 0
    forwarded: int = 0
    long_turns: int = 0
    rows: int = 0
    without_context: int = 0
    with_links: int = 0
    duplicates: int = 0
    other_authors: int = 0
    chats: int = 0
    obscene: int = 0


@dataclass(frozen=True)
class Export:
    """One export file read: its chats' messages (in order, service messages left out) and its owner's id."""

    path: Path
    chats: list[list[Message]]
    owner: str | None = None


@dataclass
class Author:
    """Someone who wrote in the exports: their id (``from_id``), the names they wrote under, their text messages."""

    id: str
    names: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    latest_name: str = ""

    @property
    def label(self) -> str:
        """``user123 (Alice)``, as messages name an author."""
        return f"{self.id} ({self.latest_name})" if self.latest_name else self.id


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
        name = message.get("from") or ""
        author = message.get("from_id") or name
        reply_to = _optional_int(message, "reply_to_message_id", at)
        yield Message(message_id, str(author), text, reply_to, has_link, forwarded, str(name))


def _raw_chats(data: object, path: Path) -> list[tuple[str, object]]:
    """(where, messages) of each chat: a single-chat export, or every chat of a whole account's export."""
    if isinstance(data, dict) and "messages" in data:
        return [(f"{path}: messages", data["messages"])]
    sections = {key: data.get(key) for key in _CHAT_LISTS} if isinstance(data, dict) else {}
    lists = {key: section.get("list") for key, section in sections.items() if isinstance(section, dict)}
    if not isinstance(lists.get("chats"), list):
        raise ExportError(
            f"{path}: neither one chat's export (a 'messages' list) nor a whole account's (chats.list): "
            "is this a Telegram Desktop JSON export (result.json)?"
        )
    found = []
    for key, chat_list in lists.items():
        for index, chat in enumerate(chat_list if isinstance(chat_list, list) else []):
            if not isinstance(chat, dict) or "messages" not in chat:
                raise ExportError(f"{path}: {key}.list[{index}] has no 'messages'")
            found.append((f"{path}: {key}.list[{index}].messages", chat["messages"]))
    return found


def _owner(data: object, path: Path) -> str | None:
    """The ``from_id`` of the account's owner in a whole account's export, None in one chat's."""
    info = data.get("personal_information") if isinstance(data, dict) else None
    if not isinstance(info, dict) or info.get("user_id") is None:
        return None
    user_id = info["user_id"]
    if isinstance(user_id, bool) or not isinstance(user_id, int | str) or not str(user_id).isdigit():
        raise ExportError(f"{path}: personal_information.user_id is not a user id")
    return f"user{user_id}"


def read_export(path: Path, stats: ExportStats) -> Export:
    """Read and check one export file; counts its chats and messages into ``stats``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise ExportError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ExportError(f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    chats = [list(parse_messages(messages, where, stats)) for where, messages in _raw_chats(data, path)]
    stats.chats += len(chats)
    return Export(Path(path), chats, _owner(data, path))


def tally_authors(exports: Iterable[Export]) -> list[Author]:
    """Everyone who wrote in the exports, most text messages first (forwards are not their words)."""
    authors: dict[str, Author] = {}
    for message in (message for export in exports for chat in export.chats for message in chat):
        author = authors.setdefault(message.author, Author(message.author))
        if message.name:
            author.names[message.name] += 1
            author.latest_name = message.name
        if message.text and not message.forwarded:
            author.messages += 1
    return sorted(authors.values(), key=lambda author: (-author.messages, author.id))


def build_turns(messages: Iterable[Message]) -> list[Turn]:
    """Merge consecutive messages of one author into turns, each linked to the turn it answers.

    A turn answers the turn its first message replies to (when that is another author's), else the
    turn just before it. Empty messages are skipped, but one from another author is a turn we lost:
    the next turn, unless it is a reply, answers nothing. A forwarded message is always such a lost
    turn, whoever forwarded it.
    """
    turns: list[Turn] = []
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
            turns.append(Turn(message.author, [message.text], parent, message.has_link))
        turn_of[message.id] = len(turns) - 1
        gap = False
    return turns


def windows(turns: list[Turn], stats: ExportStats, author: str | None = None) -> Iterator[Row]:
    """Rows (context_3, context_2, context_1, response) of the turns that answer another turn.

    With ``author`` only that author's turns are responses: the others' windows are counted in
    ``stats.other_authors``, and the other counts are of that author's turns alone.
    """
    for turn in turns:
        counted = author is None or turn.author == author
        chain = []
        parent = turn.parent
        while parent is not None and len(chain) < CONTEXT_TURNS:
            chain.append(turns[parent])
            parent = turns[parent].parent
        if not chain:
            stats.without_context += counted
        elif turn.has_link or any(t.has_link for t in chain):
            stats.with_links += counted
        elif not counted:
            stats.other_authors += 1
        else:
            context = [t.text for t in reversed(chain)]
            yield (*[""] * (CONTEXT_TURNS - len(context)), *context, turn.text)
