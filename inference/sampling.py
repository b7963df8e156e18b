"""Sampling values, defined once: the ruDialoGPT model card's, and what each reply style changes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    """How a reply is sampled: length, temperature, top-k/top-p and the repetition controls."""

    max_new_tokens: int = 40
    temperature: float = 1.2
    top_k: int = 10
    top_p: float = 0.95
    repetition_penalty: float = 1.2
    no_repeat_ngram_size: int = 2


# The ruDialoGPT model card's sampling: the bot's defaults and what train.py writes for a chat model.
MODEL_CARD = Sampling()

# Reply styles a chat can choose in /settings, and what each changes: "lively" is the configured sampling.
STYLES: dict[str, dict[str, float]] = {
    "lively": {},
    "calm": {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.3},
}
