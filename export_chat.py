"""Turn Telegram Desktop exports (result.json) into a CSV of dialogue windows for train.py.

    python export_chat.py EXPORT... OUT.csv [--author WHO] [--clean]
    python export_chat.py EXPORT... --list-authors

An export is one chat's result.json or a whole account's (its chats under chats.list); every chat of
every export is read, and a window never spans two chats. Each row is a reply and up to three turns
before it (columns context_3,context_2,context_1,response). ``--author WHO`` keeps only the rows whose
reply WHO wrote, so a model learns to answer as WHO; the turns before it may be anyone's. WHO is an id as
the export writes it (``from_id``: user123456), a display name in any case, or ``me`` (the owner of a
whole account's export). ``--list-authors`` prints who wrote how many text messages, and writes nothing.

How the windows are made (training/telegram_export.py): consecutive messages of one author make one
turn; a message that replies to an earlier one continues that thread instead of the chronological one.
Service messages and empty texts (stickers, media without a caption) are skipped; rows with links and
duplicate rows are dropped. A forwarded message is someone else's words, not its forwarder's: it is left
out like a lost turn, so nothing answers it and it answers nothing. A turn longer than 4,096 characters
(one Telegram message) keeps its last 4,096 from a word's start, as train.py keeps the newest tokens of a
long context.

``--clean`` also drops the windows whose response has an obscene word (inference/profanity.py), for a
model that doesn't learn to swear; the context may keep them.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from inference.profanity import ProfanityFilter
from training.formats import COLUMNS, MAX_TURN_CHARS
from training.telegram_export import (
    Author,
    Export,
    ExportError,
    ExportStats,
    Row,
    build_turns,
    read_export,
    tally_authors,
    windows,
)

logger = logging.getLogger("export_chat")

# What --author takes for the owner of a whole account's export.
ME = "me"
# Authors named at most in a message that suggests whom to pass.
_NAMED = 5
_EXPORT_ACCOUNT = "Telegram Desktop: Settings → Advanced → Export Telegram data, JSON"


def _fold(name: str) -> str:
    """A name as --author compares it: any case, any run of spaces."""
    return " ".join(name.split()).casefold()


def _labels(authors: Sequence[Author]) -> str:
    """``user1 (Аня): 12 messages, user2 (Боря): 1 message`` for the first few authors."""
    return ", ".join(
        f"{author.label}: {author.messages} message{'s' * (author.messages != 1)}" for author in authors[:_NAMED]
    )


def _suggestions(wanted: str, authors: Sequence[Author]) -> str:
    """``; did you mean …?`` with the authors whose names or ids come closest to ``wanted``, or where to look."""
    keys = {author.id.casefold(): author for author in authors}
    keys.update({_fold(name): author for author in authors for name in author.names})
    scores = {key: difflib.SequenceMatcher(None, wanted, key).ratio() for key in keys}
    best = max(scores.values(), default=0.0)
    # The near-best only: "user33" is as close to user1 as to user2, and closer to user3.
    close = sorted((key for key, score in scores.items() if score >= max(0.6, best - 0.1)), key=scores.__getitem__)
    found = {keys[key].id: keys[key] for key in reversed(close)}  # the closest first, each author once
    if not found:
        return "; --list-authors lists who wrote in them"
    return f"; did you mean {' or '.join(author.label for author in list(found.values())[:_NAMED])}?"


def _owner(exports: Sequence[Export], authors: Sequence[Author]) -> Author:
    """The author ``me`` stands for: the owner of the whole account's export among ``exports``."""
    owners = sorted({export.owner for export in exports if export.owner})
    if not owners:
        writers = _labels([author for author in authors if author.messages]) or "an id or a name"
        raise ExportError(
            f"'{ME}' needs the whole account's export ({_EXPORT_ACCOUNT}), which says whose account it is; "
            f"with one chat's export pass your id or name instead: {writers}"
        )
    if len(owners) > 1:
        raise ExportError(f"these exports are of {len(owners)} accounts ({', '.join(owners)}): pass one of the ids")
    return next((author for author in authors if author.id == owners[0]), Author(owners[0]))


def _named(wanted: str, authors: Sequence[Author]) -> Author:
    """The author whose id (or its digits) or one of whose display names is ``wanted`` (casefolded)."""
    by_id = {author.id.casefold(): author for author in authors}
    found = by_id.get(wanted) or by_id.get(f"user{wanted}" if wanted.isdigit() else "")
    if found is not None:
        return found
    named = [author for author in authors if wanted in {_fold(name) for name in author.names}]
    if len(named) > 1:
        raise ExportError(f"{len(named)} authors have that name ({_labels(named)}): pass an id")
    if not named:
        raise ExportError(f"nobody of that name or id in these exports{_suggestions(wanted, authors)}")
    return named[0]


def resolve_author(who: str, exports: Sequence[Export], authors: Sequence[Author]) -> Author:
    """The author WHO names: an id (``user123456``, or its digits), a display name in any case, or ``me``.

    Raises ExportError for a name two ids share, a WHO nobody matches (with the closest names), and an
    author without text messages.
    """
    wanted = _fold(who)
    try:
        found = _owner(exports, authors) if wanted == ME else _named(wanted, authors)
    except ExportError as error:
        raise ExportError(f"--author {who}: {error}") from None
    if not found.messages:
        raise ExportError(f"--author {who}: {found.label} has no text messages in these exports")
    return found


def _check_output(exports: Sequence[Path], out: Path) -> None:
    for source in exports:
        if out.resolve() == source.resolve() or (out.exists() and source.exists() and out.samefile(source)):
            raise ExportError(f"{out}: that is the export itself: name another file for the CSV")


def export(exports: Sequence[Path], out_csv: Path, author: str | None = None, *, clean: bool = False) -> ExportStats:
    """Read Telegram Desktop exports and write their dialogue windows as CSV; returns the counts.

    With ``author`` only the windows that author answers are written (see resolve_author for what it takes);
    ``clean`` drops the windows whose response has an obscene word.
    """
    out = Path(out_csv)
    _check_output([Path(path) for path in exports], out)
    stats = ExportStats()
    read = [read_export(Path(path), stats) for path in exports]
    who = resolve_author(author, read, tally_authors(read)) if author is not None else None
    profanity = ProfanityFilter() if clean else None
    rows: dict[Row, None] = {}
    for chat in (chat for each in read for chat in each.chats):
        turns = build_turns(chat)
        stats.long_turns += sum(turn.long for turn in turns)
        for row in windows(turns, stats, who.id if who else None):
            if profanity is not None and profanity.contains(row[-1]):
                stats.obscene += 1
                continue
            if row in rows:
                stats.duplicates += 1
            rows[row] = None
    named = ", ".join(map(str, exports))
    if not rows:
        if not stats.messages:
            raise ExportError(f"{named}: no messages in the export")
        if stats.obscene:
            raise ExportError(
                f"{named}: no dialogue to write: --clean dropped all {stats.obscene} windows (obscene responses)"
            )
        if who is not None:
            raise ExportError(
                f"{named}: no dialogue to write for {who.label}: none of their {who.messages} text messages answers "
                "another author's text message (without links)"
            )
        raise ExportError(
            f"{named}: no dialogue to write: none of its {stats.messages} messages answers another author's "
            "text message (without links)"
        )
    try:
        with out.open("w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    except OSError as error:
        raise ExportError(f"{out_csv}: cannot write: {error.strerror or error}") from None
    stats.rows = len(rows)
    return stats


def _print_authors(authors: Sequence[Author], exports: Sequence[Export]) -> None:
    width = max(len("id"), *(len(author.id) for author in authors)) if authors else 2
    lines = [f"{'id':<{width}}  {'messages':>8}  name"]
    lines += [f"{author.id:<{width}}  {author.messages:>8}  {author.latest_name}" for author in authors]
    owners = sorted({export.owner for export in exports if export.owner})
    if len(owners) == 1:
        lines.append(f"--author {ME} is {owners[0]}, the owner of the account's export")
    sys.stdout.write("\n".join(lines) + "\n")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Telegram Desktop exports (result.json) to a CSV of dialogue windows for train.py",
        usage="%(prog)s EXPORT [EXPORT ...] OUT.csv [--author WHO] [--clean]\n"
        "       %(prog)s EXPORT [EXPORT ...] --list-authors",
    )
    parser.add_argument(
        "files",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="the exports (one chat's or a whole account's result.json), then the CSV to write "
        "(context_3,context_2,context_1,response)",
    )
    parser.add_argument(
        "--author",
        metavar="WHO",
        help="keep only the rows WHO answers: an id (from_id, e.g. user123456), a display name in any case, or "
        "'me' (the owner of a whole account's export); the turns before may be anyone's",
    )
    parser.add_argument("--clean", action="store_true", help="drop the windows whose response has an obscene word")
    parser.add_argument(
        "--list-authors", action="store_true", help="list each author's id, text messages and name; write nothing"
    )
    args = parser.parse_args(argv)
    if args.list_authors and args.author is not None:
        parser.error("--list-authors writes nothing: leave out --author")
    if not args.list_authors:
        if len(args.files) < 2:
            parser.error("name the CSV to write after the export(s), or pass --list-authors")
        args.out_csv = args.files.pop()
    return args


def main(argv: list[str] | None = None) -> int:
    """Export (or list the authors) and log what was kept and dropped; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        if args.list_authors:
            exports = [read_export(path, ExportStats()) for path in args.files]
            _print_authors(tally_authors(exports), exports)
            return 0
        stats = export(args.files, args.out_csv, args.author, clean=args.clean)
    except ExportError as error:
        sys.stderr.write(f"export_chat.py: {error}\n")
        return 2
    logger.info(
        "%d messages in %d chat(s): %d service, %d empty and %d forwarded skipped; %d turns cut to their last %d "
        "characters; wrote %d rows to %s (dropped %d without context, %d with links, %d duplicates%s%s)",
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
        f", {stats.other_authors} answered by other authors" if args.author is not None else "",
        f", {stats.obscene} with obscene words in the response" if args.clean else "",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
