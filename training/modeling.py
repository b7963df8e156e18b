"""Tokenizer and model for training: a new small GPT-2 and BPE tokenizer, a pretrained base, and saving for the bot."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError
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
from inference.modes import CHAT
from inference.sampling import TASK_DEFAULTS
from training.formats import InputError

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


# What the hub takes as a model id: a name, or an owner and a name; neither starts with "." or "-" nor holds "..".
_HUB_ID = re.compile(r"(?!.*\.\.)\w[\w.-]*(/\w[\w.-]*)?")
_NO_HUB = "pass --from-scratch to train without the hub, or --base with a local model folder"


def _from_pretrained(name: str, **kwargs: object) -> tuple[object, PreTrainedModel]:
    tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    return tokenizer, AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32, **kwargs)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _check_hub(name: str) -> None:
    """Fail fast unless the hub answers for ``name``: one request, where a download retries for about 50 s."""
    missing = f"no local folder {Path(name).expanduser().resolve()}, and"
    if hub_constants.HF_HUB_OFFLINE:
        raise InputError(
            f"cannot load the base model {name}: {missing} it is not in the hub cache (HF_HUB_OFFLINE is "
            f"set): {_NO_HUB}"
        )
    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json"), retry_on_errors=False)
    except HfHubHTTPError as error:
        raise InputError(f"cannot load the base model {name}: {missing} the hub says: {_first_line(error)}") from None
    except Exception as error:  # the network's own errors: whatever they are, the hub is out of reach
        raise InputError(
            f"cannot load the base model {name}: {missing} the hub cannot be reached ({_first_line(error)}): {_NO_HUB}"
        ) from error


def load_pretrained(name: str) -> tuple[object, PreTrainedModel]:
    """Tokenizer and model from a local folder, the hub cache, or the hub, in float32 for training.

    A name that can only be a path (or whose parent folder exists here) is never sent to the hub, and
    the hub is asked once, without retries, before a download: offline, that fails in a moment.
    """
    path = Path(name).expanduser()
    local = path.is_dir() or not _HUB_ID.fullmatch(name) or (path.parent != Path() and path.parent.is_dir())
    try:
        if local:
            if not path.is_dir():
                what = "a file, not a model folder" if path.exists() else "no such folder"
                raise InputError(f"cannot load the base model {name}: {path.resolve()} is {what}")
            return _from_pretrained(str(path))
        try:
            return _from_pretrained(name, local_files_only=True)
        except OSError:
            _check_hub(name)
        return _from_pretrained(name)
    except (OSError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"cannot load the base model {name}: {_first_line(error)}") from None


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


def generation_config(tokens: SpecialTokens, task: str = CHAT) -> GenerationConfig:
    """The task's sampling defaults, stopping at either speaker token and never emitting padding.

    ``task`` is recorded too (a ``"task"`` key of generation_config.json), so the bot knows what the
    model was trained for.
    """
    return GenerationConfig(
        do_sample=True,
        **asdict(TASK_DEFAULTS[task]),
        eos_token_id=list(tokens.speakers),
        pad_token_id=tokens.pad,
        bos_token_id=None,
        suppress_tokens=[tokens.pad],
        task=task,
    )


def save_pretrained(model: PreTrainedModel, tokenizer: object, directory: Path) -> None:
    """Write model and tokenizer to ``directory``, every file with the permissions the umask gives.

    safetensors writes its file with mode 0600 whatever the umask; the rest follows the umask.
    """
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    umask = os.umask(0)
    os.umask(umask)
    for weights in Path(directory).glob("model*.safetensors"):
        weights.chmod(0o666 & ~umask)


def save(model: PreTrainedModel, tokenizer: object, tokens: SpecialTokens, out: Path, task: str = CHAT) -> None:
    """Write model (safetensors, float32), tokenizer and generation config to ``out``, loadable by the bot.

    ruDialoGPT's config names 50256 as bos/eos, an ordinary word of its vocabulary; the saved
    config names the speaker token that closes a reply instead.
    """
    model.config.bos_token_id = None
    model.config.eos_token_id = tokens.first
    model.config.pad_token_id = tokens.pad
    model.generation_config = generation_config(tokens, task)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_pretrained(model.to(torch.float32), tokenizer, out)
