"""The ruDialoGPT dialogue format: prompt building, user-text sanitising and reply cleaning.

Pure functions with no model inside, shared by the bot (generator.py) and the fine-tuning
pipeline (finetune.py) so both speak exactly the same format.

A prompt alternates the two speaker tokens and ends with the bot's one, e.g.
``@@ПЕРВЫЙ@@ привет @@ВТОРОЙ@@ привет @@ПЕРВЫЙ@@ как дела? @@ВТОРОЙ@@``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import regex

# ruDialoGPT was trained on 3 turns of context; far longer contexts only dilute the prompt.
MAX_CONTEXT_TURNS = 10

FIRST_SPEAKER = "@@ПЕРВЫЙ@@"
SECOND_SPEAKER = "@@ВТОРОЙ@@"

_WHITESPACE = re.compile(r"\s+")
# Zero-width and bidi controls are category Cf; they are invisible and only confuse the model.
_DROPPED_CATEGORIES = {"Cc", "Cf", "Cs", "Co"}
# A zero-width joiner between two emoji (👨‍👩‍👧: man, ZWJ, woman, ZWJ, girl) makes them one picture, so it stays;
# a skin tone or the emoji variation selector may come between the first emoji and the joiner.
_EMOJI_JOINER = regex.compile(
    r"(?<=\p{Extended_Pictographic}[\p{Emoji_Modifier}\uFE0F]?)\u200D(?=\p{Extended_Pictographic})"
)


class Turn(Protocol):
    """Anything with an author and a text (store.Turn)."""

    @property
    def author(self) -> str: ...

    @property
    def text(self) -> str: ...


class Tokenizer(Protocol):
    """The slice of a Hugging Face tokenizer this module needs."""

    def convert_tokens_to_ids(self, tokens: str) -> int | None: ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


@dataclass(frozen=True)
class SpecialTokens:
    """Token ids of the dialogue format, looked up from the tokenizer (never hard-coded)."""

    first: int
    second: int
    pad: int
    forbidden_texts: tuple[str, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: object) -> SpecialTokens:
        """Look the speaker and pad ids up; fails with a clear message if the tokenizer lacks them."""
        ids = {}
        for token in (FIRST_SPEAKER, SECOND_SPEAKER):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id:
                raise ValueError(f"the tokenizer has no {token} token: is this a ruDialoGPT model?")
            ids[token] = token_id
        pad = tokenizer.pad_token_id
        if pad is None:
            raise ValueError("the tokenizer has no pad token: is this a ruDialoGPT model?")
        added = getattr(tokenizer, "added_tokens_decoder", {})
        texts = {token.content for token in added.values()}
        texts.update(getattr(tokenizer, "all_special_tokens", []))
        texts.update((FIRST_SPEAKER, SECOND_SPEAKER))
        # Longest first, so a token that contains another is removed whole.
        forbidden = tuple(sorted((t for t in texts if t), key=len, reverse=True))
        return cls(first=ids[FIRST_SPEAKER], second=ids[SECOND_SPEAKER], pad=pad, forbidden_texts=forbidden)

    @property
    def speakers(self) -> tuple[int, int]:
        """Both speaker ids; either one ends a reply."""
        return (self.first, self.second)


def parse_context_turns(argument: str) -> int | None:
    """The number of turns a user asked for (``/context 5``), or None unless it is a whole number 1..MAX."""
    argument = argument.strip()
    return int(argument) if argument.isdigit() and 1 <= int(argument) <= MAX_CONTEXT_TURNS else None


def sanitize(text: str, forbidden_texts: Iterable[str]) -> str:
    """Remove special-token texts and invisible characters a user typed, and fold whitespace.

    Each removed token leaves a space, so ``@@ПЕР@@ПЕРВЫЙ@@ВЫЙ@@`` can't close up into a new token.
    """
    text = _visible(text)
    for token in forbidden_texts:
        text = text.replace(token, " ")
    return _WHITESPACE.sub(" ", text).strip()


def merge_turns(turns: Iterable[Turn]) -> list[str]:
    """Texts of the dialogue with consecutive turns of one author joined into one turn."""
    merged: list[tuple[str, str]] = []
    for turn in turns:
        if merged and merged[-1][0] == turn.author:
            merged[-1] = (turn.author, f"{merged[-1][1]} {turn.text}")
        else:
            merged.append((turn.author, turn.text))
    return [text for _, text in merged]


def speaker_ids(turn_count: int, tokens: SpecialTokens) -> list[int]:
    """Speaker id of each turn: they alternate so that the last turn is the user's (first speaker)."""
    return [tokens.first if (turn_count - index) % 2 == 1 else tokens.second for index in range(turn_count)]


def encode_turn(tokenizer: Tokenizer, speaker_id: int, text: str) -> list[int]:
    """Token ids of one turn: its speaker token, then `` text `` (spaces as in the model card)."""
    return [speaker_id, *tokenizer.encode(f" {text} ", add_special_tokens=False)]


def build_prompt(
    tokenizer: Tokenizer,
    tokens: SpecialTokens,
    turns: Sequence[str],
    max_turns: int,
    max_length: int,
) -> list[int]:
    """Prompt ids for the last ``max_turns`` turns, ending with the bot's speaker token.

    Keeps the prompt within ``max_length`` ids: drops the oldest turns first, then cuts the oldest
    text of the one that remains from the left.
    """
    if max_length < 3:
        raise ValueError("max_length must leave room for a speaker token, some text and the bot's token")
    recent = [turn for turn in turns if turn][-max_turns:] if max_turns > 0 else []
    encoded = [
        encode_turn(tokenizer, speaker, text)
        for speaker, text in zip(speaker_ids(len(recent), tokens), recent, strict=True)
    ]
    budget = max_length - 1
    while len(encoded) > 1 and sum(map(len, encoded)) > budget:
        encoded.pop(0)
    if encoded and len(encoded[0]) > budget:
        encoded[0] = [encoded[0][0], *encoded[0][len(encoded[0]) - budget + 1 :]]
    return [*(token for turn in encoded for token in turn), tokens.second]


def reply_ids(generated: Sequence[int], tokens: SpecialTokens) -> list[int]:
    """The generated ids up to (not including) the first speaker or pad token."""
    stops = {*tokens.speakers, tokens.pad}
    for index, token in enumerate(generated):
        if token in stops:
            return list(generated[:index])
    return list(generated)


def clean_reply(text: str, forbidden_texts: Iterable[str]) -> str:
    """Cut a decoded reply at the first special-token text, drop broken and invisible characters, fold whitespace."""
    for token in forbidden_texts:
        text = text.split(token, 1)[0]
    # A reply cut at max_new_tokens can end inside a multi-byte character, which decodes to U+FFFD.
    return _WHITESPACE.sub(" ", _visible(text).replace("\ufffd", "")).strip()


def _visible(text: str) -> str:
    """The text in NFC without control, format (zero-width, bidi), surrogate or private-use characters.

    Line breaks and tabs become spaces; a zero-width joiner inside an emoji sequence stays.
    """
    text = unicodedata.normalize("NFC", text)
    joiners = {match.start() for match in _EMOJI_JOINER.finditer(text)}
    return "".join(
        " " if ch in "\n\r\t" else ch
        for index, ch in enumerate(text)
        if ch in "\n\r\t" or unicodedata.category(ch) not in _DROPPED_CATEGORIES or index in joiners
    )
