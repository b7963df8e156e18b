"""Tokenizer and model for training: a new small GPT-2 and BPE tokenizer, a pretrained base, and saving for the bot."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import torch
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    PreTrainedModel,
)

from inference.dialogue import FIRST_SPEAKER, SECOND_SPEAKER, SpecialTokens
from inference.sampling import MODEL_CARD
from training.formats import InputError

DEFAULT_BASE = "tinkoff-ai/ruDialoGPT-small"
PAD_TOKEN = "<pad>"
END_OF_TEXT = "<|endoftext|>"


def new_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> GPT2Tokenizer:
    """A byte-level BPE GPT2Tokenizer trained on ``texts``, laid out like ruDialoGPT's.

    ``<pad>`` is id 0, ``<|endoftext|>`` id 1 (bos/eos/unk, inside the vocabulary), and the two
    speaker tokens are added as ordinary added tokens, as in ruDialoGPT.
    """
    backend = BackendTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD_TOKEN, END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Texts are encoded as " text " (encode_turn), so learn the words with their leading space.
    backend.train_from_iterator((f" {text} " for text in texts), trainer)
    model = json.loads(backend.to_str())["model"]
    tokenizer = GPT2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in model["merges"]],
        pad_token=PAD_TOKEN,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
    )
    tokenizer.add_tokens([FIRST_SPEAKER, SECOND_SPEAKER])
    return tokenizer


def new_model(
    tokenizer: GPT2Tokenizer,
    n_embd: int = 256,
    n_layer: int = 4,
    n_head: int = 4,
    n_positions: int = 256,
    dropout: float = 0.1,
    tie_word_embeddings: bool = True,
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 sized for ``tokenizer`` (seed torch first for a reproducible one)."""
    tokens = SpecialTokens.from_tokenizer(tokenizer)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tokens.pad,
        bos_token_id=None,
        eos_token_id=tokens.first,
    )
    return GPT2LMHeadModel(config)


def load_pretrained(name: str) -> tuple[object, PreTrainedModel]:
    """Tokenizer and model from a hub id or a local directory, in float32 for training."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot load the base model {name}: {reason}") from None
    return tokenizer, model


def special_tokens(tokenizer: object, model: PreTrainedModel, name: str) -> SpecialTokens:
    """The dialogue tokens of a tokenizer, checked against the model's embedding table."""
    try:
        tokens = SpecialTokens.from_tokenizer(tokenizer)
    except ValueError as error:
        raise InputError(f"{name}: {error} (use a ruDialoGPT base or --from-scratch)") from None
    size = model.get_input_embeddings().num_embeddings
    for token_id in (*tokens.speakers, tokens.pad):
        if token_id >= size:
            raise InputError(f"{name}: token id {token_id} is past the model's {size} embeddings")
    return tokens


def generation_config(tokens: SpecialTokens) -> GenerationConfig:
    """The model card's sampling, stopping at either speaker token and never emitting padding."""
    return GenerationConfig(
        do_sample=True,
        **asdict(MODEL_CARD),
        eos_token_id=list(tokens.speakers),
        pad_token_id=tokens.pad,
        bos_token_id=None,
        suppress_tokens=[tokens.pad],
    )


def save(model: PreTrainedModel, tokenizer: object, tokens: SpecialTokens, out: Path) -> None:
    """Write model (safetensors, float32), tokenizer and generation config to ``out``, loadable by the bot.

    ruDialoGPT's config names 50256 as bos/eos, an ordinary word of its vocabulary; the saved
    config names the speaker token that closes a reply instead.
    """
    model.config.bos_token_id = None
    model.config.eos_token_id = tokens.first
    model.config.pad_token_id = tokens.pad
    model.generation_config = generation_config(tokens)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float32).save_pretrained(out)
    tokenizer.save_pretrained(out)
