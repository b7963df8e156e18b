"""Write the replies users rated with 👍/👎 (FEEDBACK=on) as training rows for the next fine-tune.

    python export_feedback.py feedback.csv                      # the database at DB_PATH
    python export_feedback.py feedback.csv --db data/bot.sqlite3

Columns ``context_3,context_2,context_1,response,rating``: the turns the model saw (the newest in
context_1), its reply, and the sum of the votes on it (+1 for each 👍, -1 for each 👎). train.py reads
the file as it is and trains on the rows rated positive.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sqlite3
import sys
from pathlib import Path

from bot.feedback_store import FeedbackStore, RatedReply
from settings import ConfigError, load_settings
from training.formats import COLUMNS

logger = logging.getLogger("export_feedback")

HEADER = (*COLUMNS, "rating")


def row(rated: RatedReply) -> tuple[str, str, str, str, int]:
    """A reply as a CSV row: up to three context turns, oldest first, then the reply and its rating."""
    context = ["", "", "", *rated.context][-3:]
    return (*context, rated.reply, rated.rating)


def export(db_path: Path, out_csv: Path) -> int:
    """Write every rated reply of the database to ``out_csv``; returns how many rows were written."""
    if not db_path.is_file():
        raise FileNotFoundError(f"no database at {db_path} (set DB_PATH or pass --db)")
    if out_csv.resolve() == db_path.resolve():
        raise ValueError(f"{out_csv} is the database itself: name another file for the CSV")
    db = sqlite3.connect(db_path)
    try:
        rows = [row(rated) for rated in FeedbackStore(db).rated()]
    finally:
        db.close()
    with out_csv.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    """Export and say how many rows were written; returns the exit status."""
    parser = argparse.ArgumentParser(description="The bot's rated replies as a CSV for train.py")
    parser.add_argument("out_csv", type=Path, help="the CSV to write (context_3,context_2,context_1,response,rating)")
    parser.add_argument("--db", type=Path, help="the bot's SQLite database (default: DB_PATH from the settings)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        db_path = args.db or Path(load_settings().db_path)
        count = export(db_path, args.out_csv)
    except ConfigError as error:
        sys.stderr.write(f"export_feedback.py: config error: {error}\n")
        return 2
    except (OSError, ValueError, sqlite3.Error) as error:
        sys.stderr.write(f"export_feedback.py: {error}\n")
        return 2
    logger.info("wrote %d rated replies to %s", count, args.out_csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
