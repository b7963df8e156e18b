"""Odd and hostile messages: each gets a sane answer or is ignored by rule; none crashes or corrupts history."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Harness
from recording_backend import RecordingBackend

import texts
from inference.transformers_backend import TransformersBackend

# Every special token of the test tokenizer (test_dialogue checks the real one's extra tokens).
SPEAKERS = "@@ПЕРВЫЙ@@ @@ВТОРОЙ@@ <|endoftext|> <pad>"
REPLIED = "reply"  # the model's answer, stored after the cleaned text
FORWARD = {"forward_origin": {"type": "hidden_user", "date": 0, "sender_user_name": "Кто-то"}}

CASES = [
    # (id, text, extra update fields, expected answer, expected stored user text or None)
    ("longest", "слово " * 682 + "end", {}, REPLIED, ("слово " * 682 + "end")),
    ("empty", "", {}, texts.NOT_TEXT, None),
    ("whitespace", "   \n\t ", {}, texts.EMPTY_TEXT, None),
    ("emoji-only", "😀🔥👍", {}, REPLIED, "😀🔥👍"),
    ("right-to-left", "مرحبا كيف حالك", {}, REPLIED, "مرحبا كيف حالك"),
    ("zero-width", "при\u200bвет\u200d\u2066", {}, REPLIED, "привет"),
    ("joined-emoji", "👨\u200d👩\u200d👧\u200b!", {}, REPLIED, "👨\u200d👩\u200d👧!"),
    ("control-chars", "при\x00вет\x1b[31m", {}, REPLIED, "привет[31m"),
    ("only-special-tokens", SPEAKERS * 20, {}, texts.EMPTY_TEXT, None),
    ("special-tokens-inside", f"{SPEAKERS} как дела? {SPEAKERS}", {}, REPLIED, "как дела?"),
    ("other-bots-command", "/start@other_bot", {}, None, None),
    ("forwarded", "пересланный текст", FORWARD, REPLIED, "пересланный текст"),
    ("group-not-addressed", "обычная болтовня", {"chat_type": "group", "user_id": 3}, None, None),
]


@pytest.fixture(scope="module")
def model(answering_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(answering_model_dir), device="cpu")


@pytest.fixture
def harness(model: TransformersBackend, make_harness) -> Harness:
    return make_harness(RecordingBackend(model))


@pytest.mark.parametrize(("text", "extra", "answer", "stored"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_input(harness: Harness, text: str, extra: dict, answer, stored) -> None:
    chat = -500 if extra.get("chat_type") == "group" else 500
    answers = await harness.send(chat, text, **extra)
    history = harness.store.recent_turns(chat, 10)
    if answer is REPLIED:
        assert len(answers) == 1 and answers[0] not in (texts.ERROR, texts.EMPTY_TEXT, texts.FALLBACK_REPLY)
        assert [t.text for t in history] == [stored.strip(), answers[0]]
    else:
        assert answers == ([] if answer is None else [answer])
        assert history == []
    for turn in history:
        assert "@@" not in turn.text and "<|endoftext|>" not in turn.text
    assert all(len(a) <= 4096 for a in answers)


async def test_edited_messages_are_ignored(harness: Harness) -> None:
    """By rule: an edit doesn't rewrite the dialogue or ask for a second reply."""
    update = {
        "update_id": 1,
        "edited_message": {
            "message_id": 1,
            "date": 0,
            "edit_date": 1,
            "chat": {"id": 1, "type": "private"},
            "from": {"id": 1, "is_bot": False, "first_name": "А"},
            "text": "исправлено",
        },
    }
    await harness.dispatcher.feed_raw_update(harness.bot, update)
    assert harness.session.calls == [] and harness.store.recent_turns(1, 10) == []


async def test_an_update_of_a_kind_aiogram_does_not_know_is_let_go_quietly(harness: Harness) -> None:
    """A newer Bot API may send kinds of update this aiogram has no field for: no error, no alert, no answer."""
    update = {"update_id": 2, "some_future_update": {"chat": {"id": 1, "type": "private"}}}
    with pytest.warns(RuntimeWarning, match="Detected unknown update type"):
        await harness.dispatcher.feed_raw_update(harness.bot, update)
    assert harness.session.calls == []
