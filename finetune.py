"""Fine-tuning ruDialoGPT on dialogue windows: data, examples, model, training loop, evaluation, saving.

One module shared by ``train.py`` and ``notebooks/model.ipynb``. A training example is exactly the
prompt the bot builds (dialogue.build_prompt) for the context turns, then the response text and the
first speaker's token, which closes the reply; the bot stops generation at that token. Loss is taken
on the response and its closing token only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    PreTrainedModel,
    get_linear_schedule_with_warmup,
)
from transformers.utils import logging as transformers_logging

from dialogue import FIRST_SPEAKER, SECOND_SPEAKER, SpecialTokens, build_prompt, encode_turn, sanitize
from export_chat import COLUMNS
from generator import pick_device

logger = logging.getLogger(__name__)

DEFAULT_BASE = "tinkoff-ai/ruDialoGPT-small"
CONTEXT_COLUMNS = ("context_1", "context_2", "context_3")  # newest first
PAD_TOKEN = "<pad>"
END_OF_TEXT = "<|endoftext|>"
IGNORE_INDEX = -100
# The ruDialoGPT model card's sampling; the bot's defaults (settings.py) are the same.
SAMPLING = {
    "top_k": 10,
    "top_p": 0.95,
    "temperature": 1.2,
    "repetition_penalty": 1.2,
    "no_repeat_ngram_size": 2,
    "max_new_tokens": 40,
}
_STATE_FILE = "trainer_state.pt"


class InputError(ValueError):
    """Bad input (data file, base model, checkpoint): the message names the file and the row or field."""


@dataclass(frozen=True)
class Dialogue:
    """One window of a chat: the context turns (oldest first, the last one is the user's) and the reply."""

    context: tuple[str, ...]
    response: str


@dataclass(frozen=True)
class Example:
    """Token ids of one training example and its labels (IGNORE_INDEX on the prompt)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class Evaluation:
    """Mean loss per response token on the held-out examples, and its perplexity."""

    loss: float
    tokens: int

    @property
    def perplexity(self) -> float:
        """exp(loss)."""
        return math.exp(self.loss)


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run depends on (train.py's options)."""

    data: Path
    out: Path
    base: str = DEFAULT_BASE
    from_scratch: bool = False
    epochs: float = 3.0
    max_steps: int | None = None
    seed: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float | None = None
    warmup_fraction: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 256
    val_fraction: float = 0.1
    # Shape of a --from-scratch model and its tokenizer.
    vocab_size: int = 8000
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_positions: int = 256
    dropout: float = 0.1
    device: str = "auto"
    checkpoint_dir: Path | None = None
    save_every: int = 200
    progress: bool = True

    @property
    def lr(self) -> float:
        """The learning rate: a small one to fine-tune a pretrained model, a larger one from scratch."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-4 if self.from_scratch else 5e-5

    @property
    def checkpoints(self) -> Path:
        """Where the last checkpoint lives: ``checkpoints/<out's name>`` next to ``out`` unless set."""
        out = Path(self.out).resolve()
        return Path(self.checkpoint_dir) if self.checkpoint_dir else out.parent / "checkpoints" / out.name


@dataclass(frozen=True)
class TrainResult:
    """What a run did: held-out evaluation before and after, and the data it used."""

    before: Evaluation
    after: Evaluation
    steps: int
    train_examples: int
    val_examples: int
    skipped_rows: int
    skipped_examples: int
    out: Path


class TrainingInterrupted(RuntimeError):
    """Ctrl+C during training; a checkpoint was saved, so the same command resumes."""


# --- data ---------------------------------------------------------------------------------------


def read_dialogues(path: Path) -> tuple[list[Dialogue], int]:
    """Dialogues of a CSV with the COLUMNS in any order, and how many rows lacked context_1 or response.

    Context is taken from context_1 backwards up to the first empty cell: a gap means a turn is
    missing, and skipping it would break the alternation of speakers.
    """
    path = Path(path)
    dialogues: list[Dialogue] = []
    skipped = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file)
            header = [name.strip() for name in reader.fieldnames or []]
            if not header:
                raise InputError(f"{path}: empty file: expected a header {','.join(COLUMNS)}")
            missing = [column for column in COLUMNS if column not in header]
            if missing:
                raise InputError(
                    f"{path}: no column {', '.join(missing)} in the header {','.join(header)!r}: "
                    f"expected {','.join(COLUMNS)} (any order)"
                )
            reader.fieldnames = header
            for number, row in enumerate(reader, start=1):
                if None in row or None in row.values():
                    fields = len(header) + len(row.get(None, ())) - sum(value is None for value in row.values())
                    raise InputError(
                        f"{path}: row {number} (line {reader.line_num}) has {fields} fields, the header has "
                        f"{len(header)}"
                    )
                response = row["response"].strip()
                context = []
                for column in CONTEXT_COLUMNS:
                    if not row[column].strip():
                        break
                    context.append(row[column].strip())
                if not context or not response:
                    skipped += 1
                    continue
                dialogues.append(Dialogue(tuple(reversed(context)), response))
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None
    except csv.Error as error:
        raise InputError(f"{path}: not a valid CSV: {error}") from None
    if not dialogues:
        raise InputError(f"{path}: no row has both context_1 and response ({skipped} rows skipped)")
    return dialogues, skipped


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


# --- tokenizer and model ------------------------------------------------------------------------


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


# --- training -----------------------------------------------------------------------------------


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA: bf16 where supported, else fp16; None (float32) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype else nullcontext()


def _token_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the labelled tokens of a batch, and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, int((labels != IGNORE_INDEX).sum())


def evaluate(
    model: PreTrainedModel,
    examples: Sequence[Example],
    pad_id: int,
    batch_size: int = 16,
    device: torch.device | None = None,
) -> Evaluation:
    """Mean loss per response token over ``examples`` (what the model is trained to predict)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), _autocast(device, autocast_dtype(device)):
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad_id).items()}
            loss, tokens = _token_loss(model, batch)
            total += float(loss)
            count += tokens
    model.train(was_training)
    return Evaluation(total / max(count, 1), count)


def _epoch_batches(count: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's shuffled batches of example indices; a function of (seed, epoch), so resuming replays it."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def _steps_per_epoch(count: int, settings: TrainSettings) -> int:
    return math.ceil(math.ceil(count / settings.batch_size) / settings.grad_accum)


def _micro_batches(
    examples: Sequence[Example], settings: TrainSettings, start_step: int, total_steps: int
) -> Iterator[tuple[int, list[list[Example]]]]:
    """(step, the micro-batches of that optimizer step) from ``start_step`` to ``total_steps``."""
    steps_per_epoch = _steps_per_epoch(len(examples), settings)
    batches, batches_epoch = [], -1
    for step in range(start_step, total_steps):
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != batches_epoch:
            batches, batches_epoch = _epoch_batches(len(examples), settings.batch_size, settings.seed, epoch), epoch
        chunk = batches[index * settings.grad_accum : (index + 1) * settings.grad_accum]
        yield step, [[examples[i] for i in batch] for batch in chunk]


def _fingerprint(settings: TrainSettings) -> str:
    """What makes two runs the same one: the data's bytes and every setting that shapes the training."""
    digest = hashlib.sha256(Path(settings.data).read_bytes())
    varying = {"data", "out", "device", "checkpoint_dir", "save_every", "progress"}
    shaping = {key: value for key, value in asdict(settings).items() if key not in varying}
    digest.update(json.dumps(shaping, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _save_checkpoint(directory: Path, model: PreTrainedModel, tokenizer: object, state: dict) -> None:
    """Write the checkpoint next to the old one, then swap, so a kill never leaves a broken one."""
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    torch.save(state, partial / _STATE_FILE)
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)


def _load_checkpoint(directory: Path, fingerprint: str) -> dict | None:
    """The saved trainer state, or None when there is no checkpoint."""
    state_file = directory / _STATE_FILE
    if not state_file.is_file():
        return None
    try:
        state = torch.load(state_file, weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise InputError(f"{state_file}: unreadable checkpoint ({error}): delete {directory} to start over") from None
    if state.get("fingerprint") != fingerprint:
        raise InputError(
            f"{directory}: a checkpoint of another run (different data or settings): "
            f"delete it to start over, or pass the same options to resume"
        )
    return state


def _prepare(
    settings: TrainSettings, train: Sequence[Dialogue], state: dict | None
) -> tuple[object, PreTrainedModel, str]:
    """Tokenizer, model and a name for messages: from the checkpoint, a new model, or the base."""
    if state is not None:
        tokenizer, model = load_pretrained(str(settings.checkpoints))
        return tokenizer, model, str(settings.checkpoints)
    if settings.from_scratch:
        tokenizer = new_tokenizer((text for d in train for text in (*d.context, d.response)), settings.vocab_size)
        torch.manual_seed(settings.seed)
        model = new_model(
            tokenizer,
            n_embd=settings.n_embd,
            n_layer=settings.n_layer,
            n_head=settings.n_head,
            n_positions=settings.n_positions,
            dropout=settings.dropout,
        )
        size = model.num_parameters() / 1e6
        logger.info("new tokenizer of %d tokens, model of %.1fM parameters", len(tokenizer), size)
        return tokenizer, model, "the new model"
    tokenizer, model = load_pretrained(settings.base)
    return tokenizer, model, settings.base


def run(settings: TrainSettings) -> TrainResult:
    """Train on ``settings.data`` and save the model to ``settings.out``; resumes from its last checkpoint."""
    # Loading and saving bars would interleave with the training one.
    transformers_logging.disable_progress_bar()
    dialogues, skipped_rows = read_dialogues(settings.data)
    train_dialogues, val_dialogues = split_dialogues(dialogues, settings.val_fraction, settings.seed)
    fingerprint = _fingerprint(settings)
    state = _load_checkpoint(settings.checkpoints, fingerprint)
    tokenizer, model, name = _prepare(settings, train_dialogues, state)
    tokens = special_tokens(tokenizer, model, name)
    max_length = min(settings.max_length, model.config.n_positions)
    train, dropped_train = build_examples(tokenizer, tokens, train_dialogues, max_length)
    val, dropped_val = build_examples(tokenizer, tokens, val_dialogues, max_length)
    if not train or not val:
        raise InputError(f"{settings.data}: too few usable rows for a train/validation split after cleaning")
    logger.info(
        "%s: %d rows skipped (no context_1 or response), %d examples dropped (empty or too long); "
        "%d training and %d held-out examples of at most %d tokens",
        settings.data,
        skipped_rows,
        dropped_train + dropped_val,
        len(train),
        len(val),
        max_length,
    )
    device = pick_device(settings.device)
    dtype = autocast_dtype(device)
    model.to(device)
    logger.info("training on %s%s", device, f" with {str(dtype).removeprefix('torch.')} autocast" if dtype else "")

    steps_per_epoch = _steps_per_epoch(len(train), settings)
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(total_steps * settings.warmup_fraction), total_steps)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    if state is None:
        before = evaluate(model, val, tokens.pad, device=device)
        step = 0
    else:
        before = Evaluation(state["before_loss"], state["before_tokens"])
        step = state["step"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        logger.info("resuming from %s at step %d of %d", settings.checkpoints, step, total_steps)
    logger.info("held-out loss before training: %.4f (perplexity %.2f)", before.loss, before.perplexity)

    def checkpoint(done: int) -> None:
        state = {
            "fingerprint": fingerprint,
            "step": done,
            "before_loss": before.loss,
            "before_tokens": before.tokens,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": torch.get_rng_state(),
        }
        _save_checkpoint(settings.checkpoints, model, tokenizer, state)

    model.train()
    bar = tqdm(total=total_steps, initial=step, desc="training", unit="step", disable=not settings.progress)
    try:
        for current, micro_batches in _micro_batches(train, settings, step, total_steps):
            for examples in micro_batches:
                batch = {k: v.to(device) for k, v in collate(examples, tokens.pad).items()}
                with _autocast(device, dtype):
                    loss_sum, count = _token_loss(model, batch)
                loss = loss_sum / max(count, 1) / len(micro_batches)
                (scaler.scale(loss) if scaler else loss).backward()
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update()
            bar.set_postfix(loss=f"{loss.item() * len(micro_batches):.3f}")
            step = current + 1
            if step % steps_per_epoch == 0 and step < total_steps:
                loss_now = evaluate(model, val, tokens.pad, device=device).loss
                logger.info("step %d (epoch %d): held-out loss %.4f", step, step // steps_per_epoch, loss_now)
            if step % settings.save_every == 0 and step < total_steps:
                checkpoint(step)
    except KeyboardInterrupt:
        bar.close()
        # Gradients of a half-done step are dropped: the resumed run redoes that step whole.
        checkpoint(step)
        raise TrainingInterrupted(f"interrupted at step {step}; {settings.checkpoints} saved") from None
    bar.close()
    after = evaluate(model, val, tokens.pad, device=device)
    save(model, tokenizer, tokens, settings.out)
    shutil.rmtree(settings.checkpoints, ignore_errors=True)
    if settings.checkpoint_dir is None:
        with suppress(OSError):  # the default checkpoints/ folder goes too once no run keeps one there
            settings.checkpoints.parent.rmdir()
    logger.info("saved %s", settings.out)
    return TrainResult(
        before=before,
        after=after,
        steps=total_steps,
        train_examples=len(train),
        val_examples=len(val),
        skipped_rows=skipped_rows,
        skipped_examples=dropped_train + dropped_val,
        out=Path(settings.out),
    )


def generation_config(tokens: SpecialTokens) -> GenerationConfig:
    """The model card's sampling, stopping at either speaker token and never emitting padding."""
    return GenerationConfig(
        do_sample=True,
        **SAMPLING,
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
