"""The training loop: evaluation, a train state that checkpoints and resumes exactly, and the run from CSV to model.

Shaped after nanoGPT and transformers' run_clm_no_trainer: every generator seeded first, AdamW without
weight decay on biases and LayerNorm weights, a linear schedule with warmup, a GradScaler that is
simply disabled where no fp16 runs, and one TrainState that saves and restores together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup, set_seed
from transformers.utils import logging as transformers_logging

from inference.devices import DeviceError, dtype_name, pick_device
from inference.dialogue import SpecialTokens
from training import checkpoints
from training.data import IGNORE_INDEX, Example, build_examples, collate, split_dialogues
from training.formats import Dialogue, InputError, needed_cells, read_rows
from training.modeling import load_pretrained, new_model, new_tokenizer, save, special_tokens
from training.options import TrainingInterrupted, TrainSettings, check_paths

logger = logging.getLogger(__name__)


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
class TrainResult:
    """What a run did: held-out evaluation before and after, and the data it used."""

    before: Evaluation
    after: Evaluation
    steps: int
    train_examples: int
    val_examples: int
    skipped_rows: int
    low_rated_rows: int
    skipped_examples: int
    out: Path


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
    progress: str | None = None,
) -> Evaluation:
    """Mean loss per response token over ``examples`` (what the model is trained to predict).

    ``progress`` names a progress bar to show while it runs (50k rows take a while on a CPU).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    starts = range(0, len(examples), batch_size)
    bar = tqdm(starts, desc=progress, unit="batch", leave=False, disable=progress is None)
    with torch.inference_mode(), _autocast(device, autocast_dtype(device)):
        for start in bar:
            batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad_id).items()}
            loss, tokens = _token_loss(model, batch)
            total += float(loss)
            count += tokens
    model.train(was_training)
    return Evaluation(total / max(count, 1), count)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on the matrices (linear and embedding weights), none on biases and LayerNorms."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def rng_states() -> dict:
    """The states of every generator training draws from (dropout on the CPU or the GPUs; Python's for luck)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"python": random.getstate(), "torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_states(states: dict) -> None:
    """Put the generators back as ``rng_states`` found them."""
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


class TrainState:
    """What a checkpoint restores besides the weights, as it was when step ``step`` began.

    The RNG states are taken at each step's start, not when Ctrl+C arrives: an interrupt halfway
    through a step has already drawn that step's dropout masks, and the resumed run redoes the step.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.step = 0
        self.rng = rng_states()

    def begin(self, step: int) -> None:
        """Mark the start of ``step``: what a checkpoint taken before the next call resumes from."""
        self.step = step
        self.rng = rng_states()

    def state_dict(self) -> dict:
        """Everything to save, in torch.load(weights_only=True)-friendly types."""
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self.rng,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state, generators included."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved with the scaler disabled (no fp16 then)
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.rng = state["rng"]
        set_rng_states(self.rng)


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


def _prepare(settings: TrainSettings, train: Sequence[Dialogue], resuming: bool) -> tuple[object, PreTrainedModel, str]:
    """Tokenizer, model and a name for messages: from the checkpoint, a new model, or the base."""
    if resuming:
        tokenizer, model = load_pretrained(str(settings.checkpoints))
        return tokenizer, model, str(settings.checkpoints)
    if settings.from_scratch:
        tokenizer = new_tokenizer((text for d in train for text in (*d.context, d.response)), settings.vocab_size)
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


@dataclass(frozen=True)
class _Data:
    """The examples a run trains and evaluates on, and how many dialogues gave none."""

    train: list[Example]
    val: list[Example]
    dropped: int


def _examples(
    settings: TrainSettings, tokenizer: object, tokens: SpecialTokens, model: PreTrainedModel, splits: tuple[list, list]
) -> _Data:
    """Training and held-out examples, with a clear error when too few survive --max-length."""
    max_length = min(settings.max_length, model.config.n_positions)
    train, dropped_train = build_examples(tokenizer, tokens, splits[0], max_length)
    val, dropped_val = build_examples(tokenizer, tokens, splits[1], max_length)
    if not train or not val:
        limit = f"--max-length {settings.max_length}"
        if max_length < settings.max_length:
            limit += f" (the model takes {max_length})"
        raise InputError(
            f"{settings.data}: too few usable rows for a train/validation split: {dropped_train + dropped_val} of "
            f"{len(splits[0]) + len(splits[1])} were empty after cleaning or longer than {limit} tokens; "
            f"raise --max-length or add rows"
        )
    return _Data(train, val, dropped_train + dropped_val)


def _step(
    model: PreTrainedModel,
    micro_batches: list[list[Example]],
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler,
) -> float:
    """Forward and backward over a step's micro-batches, accumulating gradients; returns the step's mean loss."""
    total = 0.0
    for examples in micro_batches:
        batch = {k: v.to(device) for k, v in collate(examples, pad_id).items()}
        with _autocast(device, dtype):
            loss_sum, count = _token_loss(model, batch)
        loss = loss_sum / max(count, 1) / len(micro_batches)
        scaler.scale(loss).backward()
        total += loss.item()
    return total


def _update(model: PreTrainedModel, state: TrainState) -> None:
    """Clip, step the optimizer (through the scaler), the schedule, and clear the gradients."""
    state.scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)


class _Run:
    """One training run's pieces, so the loop reads as steps, evaluations and checkpoints."""

    def __init__(
        self,
        settings: TrainSettings,
        fingerprint: str,
        model: tuple[object, PreTrainedModel, SpecialTokens],
        device: torch.device,
    ) -> None:
        self.settings = settings
        self.fingerprint = fingerprint
        self.tokenizer, self.model, self.tokens = model
        self.device = device
        self.dtype = autocast_dtype(device)
        self.before = Evaluation(math.nan, 0)
        self.saved_step: int | None = None

    def checkpoint(self, state: TrainState) -> None:
        """Save the weights, the train state and what the resumed run needs to finish the same way."""
        extra = {"fingerprint": self.fingerprint, "before_loss": self.before.loss, "before_tokens": self.before.tokens}
        checkpoints.save(self.settings.checkpoints, self.model, self.tokenizer, {**state.state_dict(), **extra})
        self.saved_step = state.step

    def train(self, data: _Data, state: TrainState, total_steps: int) -> None:
        """Steps from ``state.step`` to ``total_steps``; Ctrl+C saves a checkpoint and raises TrainingInterrupted."""
        settings, model = self.settings, self.model
        steps_per_epoch = _steps_per_epoch(len(data.train), settings)
        bar = tqdm(total=total_steps, initial=state.step, desc="training", unit="step", disable=not settings.progress)
        updating = False
        try:
            model.train()
            for current, micro_batches in _micro_batches(data.train, settings, state.step, total_steps):
                loss = _step(model, micro_batches, self.tokens.pad, self.device, self.dtype, state.scaler)
                updating = True  # weights and state change together: an interrupt in between can't be saved
                _update(model, state)
                state.begin(current + 1)
                updating = False
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}")
                if state.step % steps_per_epoch == 0 and state.step < total_steps:
                    loss_now = evaluate(model, data.val, self.tokens.pad, device=self.device).loss
                    logger.info(
                        "step %d (epoch %d): held-out loss %.4f", state.step, state.step // steps_per_epoch, loss_now
                    )
                if state.step % settings.save_every == 0 and state.step < total_steps:
                    self.checkpoint(state)
        except KeyboardInterrupt:
            bar.close()
            if updating:
                since = f"the checkpoint of step {self.saved_step}" if self.saved_step is not None else "the start"
                raise TrainingInterrupted(f"interrupted while updating the weights: resumes from {since}") from None
            # Gradients of a half-done step are dropped: the resumed run redoes that step whole.
            self.checkpoint(state)
            raise TrainingInterrupted(f"interrupted at step {state.step}; {settings.checkpoints} saved") from None
        bar.close()


def _split(settings: TrainSettings) -> tuple[tuple[list, list], int, int]:
    """The train/validation split of the data file's dialogues, and the rows skipped as incomplete or low-rated."""
    rows = read_rows(settings.data, settings.task, settings.min_rating)
    if rows.low_rated:
        logger.info(
            "%s: %d rows skipped for a rating below --min-rating %d", settings.data, rows.low_rated, settings.min_rating
        )
    return split_dialogues(rows.dialogues, settings.val_fraction, settings.seed), rows.incomplete, rows.low_rated


def _start(job: _Run, data: _Data, total_steps: int, saved: dict | None) -> TrainState:
    """Optimizer, schedule and scaler: new (then the held-out loss before training), or as the checkpoint left them."""
    settings, model = job.settings, job.model
    optimizer = torch.optim.AdamW(parameter_groups(model, settings.weight_decay), lr=settings.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(total_steps * settings.warmup_fraction), total_steps)
    state = TrainState(optimizer, scheduler, torch.amp.GradScaler(job.device.type, enabled=job.dtype == torch.float16))
    if saved is None:
        bar = "held-out loss before" if settings.progress else None
        job.before = evaluate(model, data.val, job.tokens.pad, device=job.device, progress=bar)
    else:
        job.before = Evaluation(saved["before_loss"], saved["before_tokens"])
        state.load_state_dict(saved)
        job.saved_step = state.step
        logger.info("resuming from %s at step %d of %d", settings.checkpoints, state.step, total_steps)
    logger.info("held-out loss before training: %.4f (perplexity %.2f)", job.before.loss, job.before.perplexity)
    return state


def run(settings: TrainSettings) -> TrainResult:
    """Train on ``settings.data`` and save the model to ``settings.out``; resumes from its last checkpoint.

    Paths and device are checked before any work; log lines go through tqdm, so they don't break its bars.
    """
    with logging_redirect_tqdm(tqdm_class=tqdm):
        return _run(settings)


def _run(settings: TrainSettings) -> TrainResult:
    check_paths(settings)
    try:
        device = pick_device(settings.device)
    except DeviceError as error:
        raise InputError(f"--device {error}") from None
    # Loading and saving bars would interleave with the training one.
    transformers_logging.disable_progress_bar()
    set_seed(settings.seed)  # Python, numpy, torch and CUDA: the new model's weights and the dropout masks
    splits, skipped_rows, low_rated = _split(settings)
    fingerprint = _fingerprint(settings)
    saved = checkpoints.load(settings.checkpoints, fingerprint)
    tokenizer, model, name = _prepare(settings, splits[0], saved is not None)
    tokens = special_tokens(tokenizer, model, name)
    data = _examples(settings, tokenizer, tokens, model, splits)
    logger.info(
        "%s: %d rows skipped (no %s), %d examples dropped (empty or too long); "
        "%d training and %d held-out examples of at most %d tokens",
        settings.data,
        skipped_rows,
        needed_cells(settings.task).replace(" and ", " or "),
        data.dropped,
        len(data.train),
        len(data.val),
        min(settings.max_length, model.config.n_positions),
    )
    job = _Run(settings, fingerprint, (tokenizer, model.to(device), tokens), device)
    logger.info("training on %s%s", device, f" with {dtype_name(job.dtype)} autocast" if job.dtype else "")
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * _steps_per_epoch(len(data.train), settings)))
    state = _start(job, data, total_steps, saved)
    job.train(data, state, total_steps)
    try:
        bar = "held-out loss after" if settings.progress else None
        after = evaluate(model, data.val, tokens.pad, device=device, progress=bar)
        save(model, tokenizer, tokens, settings.out, settings.task)
    except KeyboardInterrupt:
        job.checkpoint(state)
        raise TrainingInterrupted(f"interrupted after training; {settings.checkpoints} saved") from None
    checkpoints.remove(settings.checkpoints)
    if settings.checkpoint_dir is None:
        with suppress(OSError):  # the default checkpoints/ folder goes too once no run keeps one there
            settings.checkpoints.parent.rmdir()
    logger.info("saved %s", settings.out)
    return TrainResult(
        before=job.before,
        after=after,
        steps=total_steps,
        train_examples=len(data.train),
        val_examples=len(data.val),
        skipped_rows=skipped_rows,
        low_rated_rows=low_rated,
        skipped_examples=data.dropped,
        out=Path(settings.out),
    )
