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
