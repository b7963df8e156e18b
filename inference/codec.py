"""A model's tokenizer in the dialogue format: clean user text, build prompt ids, decode replies.

Shared by every backend, so prompts and reply cleaning are the same whichever engine generates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from transformers import AutoTokenizer, GenerationConfig

from inference.backend import ModelLoadError
from inference.dialogue import SpecialTokens, build_prompt, clean_reply, reply_ids, sanitize
from inference.sampling import SAMPLING_FIELDS

logger = logging.getLogger(__name__)


class PromptCodec:
    """The tokenizer and special tokens of one model, with the dialogue format's encode and decode."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = name
        try:
            self.tokens = SpecialTokens.from_tokenizer(tokenizer)
        except ValueError as error:
            raise ModelLoadError(f"{name}: {error}") from None

    @classmethod
    def load(cls, path: str) -> PromptCodec:
        """The tokenizer at ``path`` (a model directory or a hub id)."""
        try:
            # ruDialoGPT's tokenizer_config.json asks for a WordPiece space clean-up that transformers skips for
            # BPE tokenizers anyway, with a warning at every decode; False says what really happens.
            tokenizer = AutoTokenizer.from_pretrained(path, clean_up_tokenization_spaces=False)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"could not load the tokenizer from {path}: {error}") from None
        return cls(tokenizer, path)

    def clean(self, text: str) -> str:
        """The user's text without special tokens or invisible characters."""
        return sanitize(text, self.tokens.forbidden_texts)

    def prompt_ids(self, turns: Sequence[str], max_length: int) -> list[int]:
        """Prompt ids for the dialogue turns (oldest first), at most ``max_length`` long."""
        return build_prompt(self.tokenizer, self.tokens, turns, len(turns), max_length)

    def decode(self, row: Sequence[int]) -> str:
        """The reply text of generated ids: up to the first speaker or pad token, cleaned."""
        return self.clean_reply(self.tokenizer.decode(reply_ids(row, self.tokens), skip_special_tokens=True))

    def clean_reply(self, text: str) -> str:
        """A generated text cut at the first special token's text, without invisible or broken characters."""
        return clean_reply(text, self.tokens.forbidden_texts)


def model_generation_defaults(path: str) -> tuple[dict[str, Any], str | None]:
    """The sampling values in the model's generation_config.json, and the task train.py recorded there.

    A model without one (or a hub model whose config only names bos/eos) gives ``({}, None)``.
    """
    try:
        config = GenerationConfig.from_pretrained(path)
    except (OSError, ValueError):
        return {}, None
    values = config.to_diff_dict()
    sampling = {key: values[key] for key in SAMPLING_FIELDS if key in values}
    return sampling, values.get("task")
