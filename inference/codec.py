"""A model's tokenizer in the dialogue format: clean user text, build prompt ids, decode replies.

Shared by every backend, so prompts and reply cleaning are the same whichever engine generates. Nothing here
imports torch: transformers' Auto classes do (through its model configuration classes), so the tokenizer and the
model's config are read without them, and a CTranslate2 bot never loads torch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import transformers
from huggingface_hub import try_to_load_from_cache
from transformers import GenerationConfig, PreTrainedTokenizerBase
from transformers.utils import cached_file

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
            tokenizer = tokenizer_class(path).from_pretrained(path, clean_up_tokenization_spaces=False)
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

    def end_ids(self, table_size: int) -> tuple[int, ...]:
        """The tokens a row stops at: either speaker token, and every other token whose text cuts the reply there.

        ``decode`` cuts a reply at the first special token's text, so nothing generated after such a token (the
        real tokenizer's ``<FIRST_SPEAKER>`` and ``<SECOND_SPEAKER>``) can change it: the row stops there, and its
        reply is the text it would have had at full length. The candidates are the tokenizer's added tokens inside
        the model's ``table_size`` rows, the pad token aside (it is never generated); ordinary tokens are not scanned.
        """
        speakers, forbidden = self.tokens.speakers, self.tokens.forbidden_texts
        candidates = (token_id for token_id in self.tokenizer.added_tokens_decoder if token_id < table_size)
        cut = sorted(
            token_id
            for token_id in candidates
            if token_id not in (*speakers, self.tokens.pad)
            and self.tokenizer.decode([token_id], skip_special_tokens=True).lstrip().startswith(forbidden)
        )
        return (*speakers, *cut)

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


def tokenizer_class(path: str) -> Any:
    """The class AutoTokenizer would load the model's tokenizer with: the one its tokenizer_config.json names.

    Read from the model's folder, or a hub model's cached files (no network); a tokenizer whose config is not
    there yet, or names no class transformers has, gets AutoTokenizer itself (which imports torch).
    """
    config = (
        Path(path) / "tokenizer_config.json"
        if Path(path).is_dir()
        else try_to_load_from_cache(path, "tokenizer_config.json")
    )
    try:
        name = json.loads(Path(config).read_text(encoding="utf-8")).get("tokenizer_class")
    except (TypeError, OSError, ValueError, AttributeError):
        name = None
    found = getattr(transformers, name, None) if isinstance(name, str) else None
    if isinstance(found, type) and issubclass(found, PreTrainedTokenizerBase):
        return found
    return transformers.AutoTokenizer


def model_positions(path: str) -> int:
    """The model's positions: its config's n_positions (or max_position_embeddings), as AutoConfig reads them."""
    try:
        config = json.loads(Path(cached_file(path, "config.json")).read_text(encoding="utf-8"))
        return int(config.get("n_positions") or config["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"could not read the number of positions from {path}'s config.json: {error}") from None
