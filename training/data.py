"""Training examples: the train/validation split, one example per dialogue, and batch collation.

A training example is exactly the prompt the bot builds (inference.dialogue.build_prompt) for the
context turns, then the response text and the first speaker's token, which closes the reply; the bot
stops generation at that token. Loss is taken on the response and its closing token only.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from inference.dialogue import SpecialTokens, build_prompt, encode_turn, sanitize
from training.formats import Dialogue, InputError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """Token ids of one training example and its labels (IGNORE_INDEX on the prompt)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def split_dialogues(dialogues: Sequence[Dialogue], val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded random train/validation split; validation gets at least one dialogue."""
    if len(dialogues) < 2:
        raise InputError(f"need at least 2 usable rows to hold one out for validation, got {len(dialogues)}")
    order = list(range(len(dialogues)))
    random.Random(seed).shuffle(order)
    held_out = min(len(dialogues) - 1, max(1, round(len(dialogues) * val_fraction)))
    return [dialogues[i] for i in order[held_out:]], [dialogues[i] for i in order[:held_out]]


def build_example(tokenizer: object, tokens: SpecialTokens, dialogue: Dialogue, max_length: int) -> Example | None:
    """The training example of a dialogue, at most ``max_length`` ids; None if nothing usable is left.

    Texts are sanitised as the bot sanitises user input, so no special-token text (such as an
    ``<|endoftext|>`` past the embedding table) reaches the model. Over-long dialogues lose their
    oldest context first; a reply that leaves no room for any context is dropped rather than cut,
    since a cut reply would teach the model to stop mid-sentence.
    """
    response = sanitize(dialogue.response, tokens.forbidden_texts)
    context: list[str] = []
    for turn in reversed(dialogue.context):
        clean = sanitize(turn, tokens.forbidden_texts)
        if not clean:
            break
        context.insert(0, clean)
    if not response or not context:
        return None
    # encode_turn's leading speaker id is the one that closes the prompt, already in it.
    reply = [*encode_turn(tokenizer, tokens.second, response)[1:], tokens.first]
    budget = max_length - len(reply)
    if budget < 3:
        return None
    prompt = build_prompt(tokenizer, tokens, context, max_turns=len(context), max_length=budget)
    return Example((*prompt, *reply), (*[IGNORE_INDEX] * len(prompt), *reply))


def build_examples(
    tokenizer: object, tokens: SpecialTokens, dialogues: Iterable[Dialogue], max_length: int
) -> tuple[list[Example], int]:
    """Examples of the dialogues and how many were dropped (empty after sanitising, or too long)."""
    examples = []
    dropped = 0
    for dialogue in dialogues:
        example = build_example(tokenizer, tokens, dialogue, max_length)
        if example is None:
            dropped += 1
        else:
            examples.append(example)
    return examples, dropped


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch: input_ids, attention_mask and labels (IGNORE_INDEX on padding)."""
    width = max(len(example.input_ids) for example in examples)
    input_ids = [[*e.input_ids, *[pad_id] * (width - len(e.input_ids))] for e in examples]
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in examples]
    labels = [[*e.labels, *[IGNORE_INDEX] * (width - len(e.labels))] for e in examples]
    return {
        "input_ids": torch.tensor(input_ids),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor(labels),
    }
