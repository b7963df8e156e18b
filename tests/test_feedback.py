"""FEEDBACK: 👍/👎 under replies, one vote per user, /forget, /stats, and the export for the next fine-tune."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiogram.methods import AnswerCallbackQuery, EditMessageReplyMarkup
from botprocess import ADMIN, is_to, start_bot, stop_bot
from conftest import ROOT
from fake_telegram import FakeTelegram
from harness import Harness

import export_feedback
import texts
from bot.commands import ForgetChoice
from bot.feedback import Vote
from inference.transformers_backend import TransformersBackend

GROUP = -100300


@pytest.fixture
def harness(answering_backend: TransformersBackend, make_harness) -> Harness:
    # A model that always answers: the buttons go under replies only, never under the fallback for an empty one.
    return make_harness(answering_backend, feedback="on")


def vote_buttons(harness: Harness, chat_id: int) -> list[tuple[str, Vote]]:
    markup = harness.session.sent(chat_id)[-1].reply_markup
    assert markup is not None, "no buttons under the reply"
    return [(b.text, Vote.unpack(b.callback_data)) for row in markup.inline_keyboard for b in row]


def stored_votes(harness: Harness) -> list[tuple[int, int]]:
    return harness.store.connection.execute("SELECT user_id, rating FROM votes ORDER BY user_id").fetchall()


async def test_a_chat_reply_gets_thumbs_and_commands_do_not(harness: Harness) -> None:
    await harness.send(1, "привет")
    [(up, like), (down, dislike)] = vote_buttons(harness, 1)
    assert (up, down) == (texts.LIKE, texts.DISLIKE) and (like.rating, dislike.rating) == (1, -1)
    assert like.reply_id == dislike.reply_id
    await harness.send(1, "/help")
    assert harness.session.sent(1)[-1].reply_markup is None
    await harness.send(1, "/horoscope лев")
    rows = harness.session.sent(1)[-1].reply_markup.inline_keyboard
    assert not any(b.callback_data.startswith("vote:") for row in rows for b in row), "FEEDBACK=on: chat only"


async def test_a_press_is_thanked_stored_shown_and_a_second_press_changes_the_vote(harness: Harness) -> None:
    await harness.send(1, "привет")
    [(_, like), (_, dislike)] = vote_buttons(harness, 1)
    await harness.press(1, like.pack())
    assert [c.text for c in harness.session.calls if isinstance(c, AnswerCallbackQuery)] == [texts.FEEDBACK_THANKS]
    assert stored_votes(harness) == [(1, 1)]
    edit = [c for c in harness.session.calls if isinstance(c, EditMessageReplyMarkup)][-1]
    assert [b.text for b in edit.reply_markup.inline_keyboard[-1]] == [f"{texts.LIKE} 1", texts.DISLIKE]
    await harness.press(1, dislike.pack())
    assert stored_votes(harness) == [(1, -1)], "changed, not added"
    [(context, reply, rating)] = [(r.context, r.reply, r.rating) for r in harness.dispatcher["feedback"].rated()]
    assert context == ("привет",) and reply == harness.session.sent(1)[0].text and rating == -1


async def test_in_groups_every_member_votes_once(harness: Harness) -> None:
    await harness.send(GROUP, "@test_bot привет", chat_type="supergroup", user_id=11)
    [(_, like), (_, dislike)] = vote_buttons(harness, GROUP)
    for user, vote in ((11, like), (12, like), (13, dislike), (12, like)):
        await harness.press(GROUP, vote.pack(), user_id=user, chat_type="supergroup")
    assert stored_votes(harness) == [(11, 1), (12, 1), (13, -1)]
    [rated] = list(harness.dispatcher["feedback"].rated())
    assert rated.rating == 1


async def test_forget_deletes_the_chats_feedback_and_a_later_press_is_answered_politely(harness: Harness) -> None:
    await harness.send(1, "привет")
    [(_, like), _] = vote_buttons(harness, 1)
    await harness.press(1, like.pack())
    await harness.press(1, ForgetChoice(confirmed=True).pack())
    assert list(harness.dispatcher["feedback"].rated()) == [] and stored_votes(harness) == []
    await harness.press(1, like.pack())
    answer = [c for c in harness.session.calls if isinstance(c, AnswerCallbackQuery)][-1]
    assert answer.text == texts.FEEDBACK_GONE
    assert stored_votes(harness) == []


async def test_stats_show_the_share_of_thumbs_up(harness: Harness) -> None:
    for chat, rating in ((1, 1), (2, 1), (3, -1)):
        await harness.send(chat, "привет")
        vote = next(v for _, v in vote_buttons(harness, chat) if v.rating == rating)
        await harness.press(chat, vote.pack())
    [report] = await harness.send(ADMIN, "/stats")
    assert "Оценки 👍: 67% из 3 сегодня, 67% из 3 всего" in report


async def test_feedback_all_puts_thumbs_under_toasts_too(answering_backend: TransformersBackend, make_harness) -> None:
    harness = make_harness(answering_backend, feedback="all", toast_max_new_tokens=10)
    await harness.send(1, "/toast Новый год")
    rows = harness.session.sent(1)[-1].reply_markup.inline_keyboard
    labels = [b.text for row in rows for b in row]
    assert labels[0] == texts.MORE_BUTTON and labels[-2:] == [texts.LIKE, texts.DISLIKE]


async def test_without_feedback_there_are_no_buttons(answering_backend: TransformersBackend, make_harness) -> None:
    harness = make_harness(answering_backend)
    await harness.send(1, "привет")
    assert harness.session.sent(1)[-1].reply_markup is None


def test_export_refuses_a_missing_database_or_writing_over_it(tmp_path: Path) -> None:
    assert export_feedback.main([str(tmp_path / "out.csv"), "--db", str(tmp_path / "none.sqlite3")]) == 2
    db = tmp_path / "bot.sqlite3"
    db.write_bytes(b"")
    assert export_feedback.main([str(db), "--db", str(db)]) == 2
    assert db.read_bytes() == b""


# --- end to end: the real process, the export, and train.py on it -----------------------------------------


async def test_votes_end_to_end_exported_and_trained_on(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, tiny_model_dir, feedback="on")
    votes = {21: texts.LIKE, 22: texts.DISLIKE, 23: texts.LIKE, 24: texts.LIKE, 25: texts.LIKE}
    try:
        for chat in votes:
            since = len(fake.calls)
            fake.send_text(chat, "привет, как дела?")
            await fake.wait_for("sendMessage", is_to(chat), since=since, timeout=30)
        since = len(fake.calls)
        for chat, label in votes.items():
            fake.press(chat, label)
        answers = await fake.wait_for_count("answerCallbackQuery", len(votes), since=since)
        assert {answer["text"] for answer in answers} == {texts.FEEDBACK_THANKS}
        await fake.wait_for("editMessageReplyMarkup", is_to(23), since=since)
        fake.press(23, texts.DISLIKE)  # changes its mind
        await fake.wait_for_count("editMessageReplyMarkup", 2, is_to(23), since=since)
        labels = [b["text"] for row in fake.bot_messages(23)[-1]["reply_markup"]["inline_keyboard"] for b in row]
        assert labels == [texts.LIKE, f"{texts.DISLIKE} 1"]
        await stop_bot(bot)
    finally:
        bot.kill()

    out = tmp_path / "feedback.csv"
    done = subprocess.run(
        [sys.executable, str(ROOT / "export_feedback.py"), str(out), "--db", str(tmp_path / "bot.sqlite3")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with out.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["context_3", "context_2", "context_1", "response", "rating"]
    assert [row["rating"] for row in rows] == ["1", "-1", "-1", "1", "1"]
    assert all(row["context_1"] == "привет, как дела?" and row["response"] for row in rows)

    trained = subprocess.run(
        [
            *(sys.executable, str(ROOT / "train.py"), "--data", str(out), "--out", str(tmp_path / "model")),
            *("--from-scratch", "--max-steps", "1", "--vocab-size", "300", "--n-embd", "16", "--n-layer", "1"),
            *("--n-head", "2", "--val-fraction", "0.5", "--no-progress"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr
    assert "2 rows skipped for a rating below --min-rating 1" in trained.stderr + trained.stdout


async def test_rated_replies_older_than_the_history_limit_go_with_their_votes(harness: Harness) -> None:
    await harness.send(1, "привет")
    [(_, like), _] = vote_buttons(harness, 1)
    await harness.press(1, like.pack())
    feedback = harness.dispatcher["feedback"]
    assert feedback.drop_before(time.time() - 60) == 0
    assert feedback.drop_before(time.time() + 1) == 1
    assert list(feedback.rated()) == [] and stored_votes(harness) == []
