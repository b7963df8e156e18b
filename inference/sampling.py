"""Sampling values, defined once: the ruDialoGPT model card's, and what each reply style changes."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """How a reply is sampled: length, temperature, top-k/top-p and the repetition controls."""

    max_new_tokens: int = 40
    temperature: float = 1.2
    top_k: int = 10
    top_p: float = 0.95
    repetition_penalty: float = 1.2
    no_repeat_ngram_size: int = 2


SAMPLING_FIELDS = tuple(field.name for field in fields(Sampling))


def with_values(sampling: Sampling, values: dict[str, Any]) -> Sampling:
    """``sampling`` with the given fields replaced; None values and unknown keys are ignored."""
    return replace(sampling, **{k: v for k, v in values.items() if k in SAMPLING_FIELDS and v is not None})


# The ruDialoGPT model card's sampling: the bot's defaults and what train.py writes for a chat model.
MODEL_CARD = Sampling()

# Reply styles a chat can choose in /settings, and what each changes: "lively" is the configured sampling.
STYLES: dict[str, dict[str, float]] = {
    "lively": {},
    "calm": {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.3},
}

# Toasts and horoscopes are longer than chat replies; their defaults are what the seed bots sampled with
# (GenToast: temperature 1.8, top_p 0.8, top_k 50, no_repeat_ngram 2; the horoscope bot: top_k 5,
# top_p 0.95, repetition penalty 5.0). A model's own generation_config.json overrides them.
TASK_DEFAULTS: dict[str, Sampling] = {
    "chat": MODEL_CARD,
    "toast": Sampling(max_new_tokens=120, temperature=1.8, top_k=50, top_p=0.8, repetition_penalty=1.0),
    "horoscope": Sampling(
        max_new_tokens=120, temperature=1.0, top_k=5, top_p=0.95, repetition_penalty=5.0, no_repeat_ngram_size=0
    ),
}
