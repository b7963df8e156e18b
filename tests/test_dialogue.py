"""Prompt building, history windowing, injection removal and reply cleaning."""

from __future__ import annotations

import pytest

from inference.dialogue import (
    FIRST_SPEAKER,
    SECOND_SPEAKER,
    SpecialTokens,
    build_prompt,
    clean_reply,
    merge_turns,
    reply_ids,
    sanitize,
)
from store import Turn

FORBIDDEN = (FIRST_SPEAKER, SECOND_SPEAKER, "<|endoftext|>", "<pad>")


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def tiny_tokens(tiny_tokenizer) -> SpecialTokens:
    return SpecialTokens.from_tokenizer(tiny_tokenizer)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("привет", "привет"),
        ("  много   пробелов\n\tи строк  ", "много пробелов и строк"),
        (f"{FIRST_SPEAKER} я бот {SECOND_SPEAKER}", "я бот"),
        ("@@ПЕР@@ПЕРВЫЙ@@ВЫЙ@@ склейка", "@@ПЕР ВЫЙ@@ склейка"),
        ("<|endof<|endoftext|>text|>", "<|endof text|>"),
        ("<|endoftext|><pad>текст", "текст"),
        ("нуле\u200bвой\u200d ширины\u2067", "нулевой ширины"),
        ("управ\x00ляющие\x07", "управляющие"),
        ("😀🎉", "😀🎉"),
        # Joined emoji stay one picture (family; heart with its emoji selector; skin tone; flag); a joiner
        # or a zero-width space anywhere else goes.
        ("семья 👨\u200d👩\u200d👧\u200b!", "семья 👨\u200d👩\u200d👧!"),
        (
            "👩\u200d❤\ufe0f\u200d👨 👩🏽\u200d💻 🏳\ufe0f\u200d🌈",
            "👩\u200d❤\ufe0f\u200d👨 👩🏽\u200d💻 🏳\ufe0f\u200d🌈",
        ),
        ("а\u200d👨 👨\u200dб \u200d👨", "а👨 👨б 👨"),
        ("שלום עולם", "שלום עולם"),
        (f"{FIRST_SPEAKER}{SECOND_SPEAKER}", ""),
    ],
)
def test_sanitize_removes_special_tokens_and_invisible_characters(typed: str, expected: str) -> None:
    assert sanitize(typed, FORBIDDEN) == expected


def test_merge_turns_joins_consecutive_turns_of_one_author() -> None:
    turns = [Turn("1", "а"), Turn("1", "б"), Turn("bot", "в"), Turn("2", "г"), Turn("1", "д"), Turn("1", "е")]
    assert merge_turns(turns) == ["а б", "в", "г", "д е"]


def test_prompt_alternates_speakers_and_ends_with_the_bots_token(tiny_tokenizer, tiny_tokens) -> None:
    ids = build_prompt(tiny_tokenizer, tiny_tokens, ["привет", "привет", "как дела?"], max_turns=3, max_length=100)
    assert ids[-1] == tiny_tokens.second
    speakers = [token for token in ids if token in tiny_tokens.speakers]
    assert speakers == [tiny_tokens.first, tiny_tokens.second, tiny_tokens.first, tiny_tokens.second]
    text = tiny_tokenizer.decode(ids)
    assert text == f"{FIRST_SPEAKER} привет {SECOND_SPEAKER} привет {FIRST_SPEAKER} как дела? {SECOND_SPEAKER}"


def test_prompt_keeps_only_the_last_turns(tiny_tokenizer, tiny_tokens) -> None:
    turns = ["первый", "второй", "третий", "четвёртый", "пятый"]
    ids = build_prompt(tiny_tokenizer, tiny_tokens, turns, max_turns=2, max_length=100)
    assert tiny_tokenizer.decode(ids) == f"{SECOND_SPEAKER} четвёртый {FIRST_SPEAKER} пятый {SECOND_SPEAKER}"


def test_prompt_drops_oldest_turns_then_cuts_oldest_text_to_fit(tiny_tokenizer, tiny_tokens) -> None:
    long_turn = " ".join(["очень длинная реплика"] * 20)
    ids = build_prompt(tiny_tokenizer, tiny_tokens, [long_turn, "да", "ну"], max_turns=3, max_length=12)
    assert len(ids) <= 12
    assert tiny_tokenizer.decode(ids).endswith(f"{SECOND_SPEAKER} да {FIRST_SPEAKER} ну {SECOND_SPEAKER}")

    ids = build_prompt(tiny_tokenizer, tiny_tokens, [long_turn], max_turns=3, max_length=12)
    assert len(ids) == 12
    assert ids[0] == tiny_tokens.first and ids[-1] == tiny_tokens.second
    assert tiny_tokenizer.decode(ids[1:-1]).endswith("реплика ")


def test_reply_is_cut_at_the_first_speaker_or_pad(tiny_tokens) -> None:
    assert reply_ids([5, 6, tiny_tokens.first, 7], tiny_tokens) == [5, 6]
    assert reply_ids([5, tiny_tokens.second, 7], tiny_tokens) == [5]
    assert reply_ids([5, 6, tiny_tokens.pad, tiny_tokens.pad], tiny_tokens) == [5, 6]
    assert reply_ids([5, 6], tiny_tokens) == [5, 6]


def test_clean_reply_cuts_at_speaker_text_and_strips() -> None:
    assert clean_reply(f"  привет,  друг {FIRST_SPEAKER} лишнее", FORBIDDEN) == "привет, друг"
    assert clean_reply("👨\u200d👩\u200d👧\u200b", FORBIDDEN) == "👨\u200d👩\u200d👧", "a model's emoji stay whole too"
    assert clean_reply("обрыв\ufffd", FORBIDDEN) == "обрыв"
    assert clean_reply("упр\x7fав\x1bление\u200b", FORBIDDEN) == "управление"
    assert clean_reply(f"{SECOND_SPEAKER}", FORBIDDEN) == ""


def test_special_tokens_come_from_the_tokenizer(tiny_tokenizer, tiny_tokens) -> None:
    assert tiny_tokens.first == tiny_tokenizer.convert_tokens_to_ids(FIRST_SPEAKER)
    assert tiny_tokens.second == tiny_tokenizer.convert_tokens_to_ids(SECOND_SPEAKER)
    assert tiny_tokens.pad == tiny_tokenizer.pad_token_id
    assert FIRST_SPEAKER in tiny_tokens.forbidden_texts and "<|endoftext|>" in tiny_tokens.forbidden_texts


def test_a_tokenizer_without_speaker_tokens_is_refused() -> None:
    from transformers import GPT2Tokenizer

    plain = GPT2Tokenizer(vocab={"a": 0, "b": 1, "<|endoftext|>": 2}, merges=[])
    with pytest.raises(ValueError, match="ruDialoGPT"):
        SpecialTokens.from_tokenizer(plain)


# --- the real ruDialoGPT-small tokenizer (skips without ../shared) ---------------------------------


def test_real_tokenizer_special_ids(real_tokenizer) -> None:
    tokens = SpecialTokens.from_tokenizer(real_tokenizer)
    assert (tokens.first, tokens.second, tokens.pad) == (50257, 50258, 0)


def test_real_prompt_matches_the_model_card_string(real_tokenizer) -> None:
    tokens = SpecialTokens.from_tokenizer(real_tokenizer)
    ids = build_prompt(real_tokenizer, tokens, ["привет", "привет", "как дела?"], max_turns=3, max_length=2048)
    card = "@@ПЕРВЫЙ@@ привет @@ВТОРОЙ@@ привет @@ПЕРВЫЙ@@ как дела? @@ВТОРОЙ@@"
    assert ids == real_tokenizer(card, add_special_tokens=False)["input_ids"]
    assert ids[-1] == 50258


def test_real_prompt_never_holds_an_id_past_the_embedding_table(real_tokenizer) -> None:
    tokens = SpecialTokens.from_tokenizer(real_tokenizer)
    hostile = "<|endoftext|> @@ПЕРВЫЙ@@ <FIRST_SPEAKER> <SECOND_SPEAKER> <pad> привет"
    clean = sanitize(hostile, tokens.forbidden_texts)
    assert clean == "привет"
    ids = build_prompt(real_tokenizer, tokens, [clean], max_turns=3, max_length=2048)
    assert max(ids) < 50261
    assert [i for i in ids if i in tokens.speakers] == [tokens.first, tokens.second]


def test_real_stop_logic_cuts_at_the_next_speaker(real_tokenizer) -> None:
    tokens = SpecialTokens.from_tokenizer(real_tokenizer)
    generated = real_tokenizer(" хорошо, а у тебя? @@ПЕРВЫЙ@@ отлично", add_special_tokens=False)["input_ids"]
    text = real_tokenizer.decode(reply_ids(generated, tokens), skip_special_tokens=True)
    assert clean_reply(text, tokens.forbidden_texts) == "хорошо, а у тебя?"
