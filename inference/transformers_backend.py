"""The transformers backend: load a model with from_pretrained and generate batches with ``generate()``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, GenerationConfig, LogitsProcessor, StoppingCriteria
from transformers.utils import logging as transformers_logging

from inference.backend import BatchStats, ModelLoadError, Outcome, Request, check_model_path
from inference.codec import PromptCodec, model_generation_defaults
from inference.devices import dtype_name, pick_device, pick_dtype
from inference.dialogue import reply_ids
from inference.progress import ReplyProgress
from inference.sampling import Sampling

logger = logging.getLogger(__name__)


class _Deadlines(StoppingCriteria):
    """Stops each row of a batch at its own deadline, so a slow generation really ends in the worker."""

    def __init__(self, deadlines: Sequence[float]) -> None:
        self._deadlines = torch.tensor(deadlines, dtype=torch.float64)
        self.hit = torch.zeros(len(deadlines), dtype=torch.bool)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        self.hit |= self._deadlines <= time.monotonic()
        return self.hit.to(input_ids.device)


class _Progress(StoppingCriteria):
    """Shows each row's text so far to its request's progress, and stops the rows whose user pressed stop."""

    def __init__(
        self, progresses: Sequence[ReplyProgress | None], width: int, decode: Callable[[list[int]], str]
    ) -> None:
        self._watched = [(row, progress) for row, progress in enumerate(progresses) if progress is not None]
        self._width = width
        self._decode = decode
        self._stopped = [False] * len(progresses)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        for row, progress in self._watched:
            if not self._stopped[row]:
                self._stopped[row] = progress.poll(partial(self._text, input_ids, row))
        return torch.tensor(self._stopped, device=input_ids.device)

    def _text(self, input_ids: torch.LongTensor, row: int) -> str:
        """The row's reply so far (its ids after the prompt), decoded and cleaned."""
        return self._decode(input_ids[row, self._width :].tolist())


class TopKSampler(LogitsProcessor):
    """Draws each row's next token among its ``top_k`` likeliest, then leaves only that token to a greedy pick.

    The same distribution as transformers' temperature, top-k and top-p warpers followed by sampling,
    but the softmax, the top-p sort and the draw run over k candidates instead of the whole vocabulary:
    with 16 rows of ruDialoGPT's 50k tokens that saves about a fifth of each decoding step on a CPU.
    """

    def __init__(self, top_k: int, top_p: float, temperature: float) -> None:
        self.top_k = top_k
        self.top_p = top_p
        self.temperature = temperature

    def candidates(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's candidate token ids, likeliest first, and their probabilities (zero past top_p)."""
        top_scores, top_ids = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1)
        probs = torch.softmax(top_scores.float() / self.temperature, dim=-1)
        # A candidate stays while the likelier ones hold less than top_p of the mass; the first always stays.
        return top_ids, probs.masked_fill(probs.cumsum(-1) - probs >= self.top_p, 0.0)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ids, probs = self.candidates(scores)
        chosen = ids.gather(-1, torch.multinomial(probs, 1))
        return torch.full_like(scores, float("-inf")).scatter_(-1, chosen, 0.0)


def fast_sampling(config: GenerationConfig) -> tuple[GenerationConfig, list[LogitsProcessor]]:
    """``config`` with top-k sampling moved into a TopKSampler; configs without top-k pass unchanged."""
    if not (config.do_sample and config.top_k):
        return config, []
    sampler = TopKSampler(config.top_k, config.top_p or 1.0, config.temperature or 1.0)
    values = config.to_diff_dict()
    for key in ("do_sample", "top_k", "top_p", "temperature"):
        values.pop(key, None)
    return GenerationConfig(**values, do_sample=False), [sampler]


class TransformersBackend:
    """A model loaded with from_pretrained that turns batches of requests into replies (runs in a worker)."""

    engine = "transformers"

    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto") -> None:
        check_model_path(path)
        started = time.perf_counter()
        transformers_logging.disable_progress_bar()
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.codec = PromptCodec.load(path)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        except SafetensorError as error:
            raise ModelLoadError(
                f"could not load the model from {path}: its weights file is damaged or cut short ({error}); "
                "copy it again or train the model again"
            ) from None
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"could not load the model from {path}: {error}") from None
        # Every generate() call gets a complete config; left in place, the model's own generation_config.json
        # (read into generation_defaults below) would fill in the sampling values fast_sampling takes out, and
        # transformers would warn that they are unused by its greedy pick.
        model.generation_config = GenerationConfig()
        self.model = model.to(self.device).eval()
        self.name = path
        self.tokens = self.codec.tokens
        self.tokenizer = self.codec.tokenizer
        self.load_seconds = time.perf_counter() - started
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.max_positions: int = self.model.config.n_positions
        self._ends = self.codec.end_ids(self.model.config.vocab_size)
        self.generation_defaults, self.task = model_generation_defaults(path)
        self._configs: dict[Sampling, GenerationConfig] = {}
        # Called with each batch's BatchStats when set (the serving benchmark counts tokens with it).
        self.on_batch: Callable[[BatchStats], None] | None = None
        logger.info(
            "loaded %s in %.1f s: %s, %.1fM parameters",
            self.name,
            self.load_seconds,
            self.summary,
            self.parameters / 1e6,
        )

    @property
    def summary(self) -> str:
        """The engine, device and dtype, for logs and the admin's notices."""
        return f"{self.engine}, {self.device}, {dtype_name(self.dtype)}"

    def clean_user_text(self, text: str) -> str:
        """The user's text without special tokens or invisible characters."""
        return self.codec.clean(text)

    def generation_config(self, sampling: Sampling) -> GenerationConfig:
        """The GenerationConfig of a sampling: stops at PromptCodec.end_ids, never emits the pad token."""
        if sampling not in self._configs:
            self._configs[sampling] = GenerationConfig(
                do_sample=True,
                **asdict(sampling),
                eos_token_id=list(self._ends),
                pad_token_id=self.tokens.pad,
                # The pad token is never a word of a reply; batched rows are padded with it.
                suppress_tokens=[self.tokens.pad],
                # A preallocated cache spares each step a copy of the whole cache (a tenth of a step at 16 rows on a
                # CPU); compiling for it would recompile for every new batch and prompt size.
                cache_implementation="static",
                disable_compile=True,
            )
        return self._configs[sampling]

    def generate(self, requests: Sequence[Request], generation: GenerationConfig | None = None) -> list[Outcome]:
        """Generate one reply per request in a single batched ``generate()`` call (all of one sampling)."""
        rows, timed_out = self.generate_ids(requests, generation)
        return [
            request.outcome(self.codec.decode(row), hit)
            for request, row, hit in zip(requests, rows, timed_out, strict=True)
        ]

    def generate_ids(
        self, requests: Sequence[Request], generation: GenerationConfig | None = None
    ) -> tuple[list[list[int]], list[bool]]:
        """The new token ids of each request's row (pads included) and whether its deadline cut it.

        A request's progress sees its row's text as it grows, and its stop ends that row.
        """
        started = time.perf_counter()
        config = generation or self.generation_config(requests[0].sampling)
        max_prompt = self.max_positions - (config.max_new_tokens or 0)
        prompts = [self.codec.prompt_ids(request.turns, max_prompt) for request in requests]
        width = max(map(len, prompts))
        # Left padding keeps every prompt's last token next to the first generated one.
        input_ids = torch.tensor([[self.tokens.pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        deadlines = _Deadlines([request.deadline for request in requests])
        stops: list[StoppingCriteria] = [deadlines]
        if any(request.progress is not None for request in requests):
            stops.append(_Progress([request.progress for request in requests], width, self.codec.decode))
        config, processors = fast_sampling(config)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=stops,
            )
        rows = output[:, width:].tolist()
        if self.on_batch is not None:
            replies = tuple(len(reply_ids(row, self.tokens)) for row in rows)
            self.on_batch(BatchStats(tuple(map(len, prompts)), replies, time.perf_counter() - started))
        return rows, deadlines.hit.tolist()
