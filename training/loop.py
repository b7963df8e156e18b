"""The training loop: settings, evaluation, checkpoints that resume exactly, and the run from CSV to saved model."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup
from transformers.utils import logging as transformers_logging

from inference.devices import dtype_name, pick_device
from training.data import IGNORE_INDEX, Example, build_examples, collate, split_dialogues
from training.formats import Dialogue, InputError, read_dialogues
from training.modeling import DEFAULT_BASE, load_pretrained, new_model, new_tokenizer, save, special_tokens

logger = logging.getLogger(__name__)

_STATE_FILE = "trainer_state.pt"


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
    logger.info("training on %s%s", device, f" with {dtype_name(dtype)} autocast" if dtype else "")

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
