"""Remote inference on an OpenAI-compatible server such as vLLM (``vllm serve saved_model``).

The prompt is still built locally with the model's tokenizer and sent as token ids, so a user's text
can never become a speaker token; generation stops at either speaker token; the reply is cleaned as
a local one is. Requests go out concurrently from the event loop (the server batches them), each
streamed (so its text can be shown while it comes, and stopped by closing the stream) and bounded by its
deadline; only what is safe to repeat is retried: a refused connection, a 5xx, a 429, before any text came.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from openai import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncOpenAI,
    AsyncStream,
    InternalServerError,
    RateLimitError,
)
from openai.types import Completion, CompletionUsage

from inference.backend import BatchStats, ModelLoadError, Outcome, Request, check_model_path
from inference.codec import PromptCodec, model_generation_defaults
from inference.dialogue import FIRST_SPEAKER, SECOND_SPEAKER
from inference.progress import ReplyProgress, until_stopped
from inference.sampling import Sampling

logger = logging.getLogger(__name__)

# The start-up check's time limit: a server that can't list its models in this long is not usable.
CHECK_TIMEOUT = 10.0
_BACKOFF, _MAX_BACKOFF = 0.5, 5.0


class RemoteInferenceError(RuntimeError):
    """The inference server failed a request and retrying could not help before its deadline."""


def _retry_after(error: APIError) -> float | None:
    """The seconds a 429's Retry-After asks for, if it says."""
    if not isinstance(error, RateLimitError):
        return None
    try:
        return float(error.response.headers.get("retry-after", ""))
    except ValueError:
        return None


@dataclass
class _Streamed:
    """What a streamed completion brought so far: its text, and the token counts its last piece tells."""

    text: str = ""
    usage: CompletionUsage | None = None


class OpenAIBackend:
    """Generates through an OpenAI-compatible ``/v1/completions`` endpoint; the tokenizer stays local."""

    engine = "openai"

    def __init__(self, url: str, *, tokenizer_path: str, model: str = "", api_key: str = "") -> None:
        check_model_path(tokenizer_path, weights=False)
        started = time.perf_counter()
        self.codec = PromptCodec.load(tokenizer_path)
        self.tokens = self.codec.tokens
        self.url = url.rstrip("/")
        self._api_key = api_key or "EMPTY"  # vLLM without --api-key accepts anything; the client needs a value
        self.model_name, self.max_positions = asyncio.run(self._check(model))
        self.name = tokenizer_path
        self.generation_defaults, self.task = model_generation_defaults(tokenizer_path)
        self.load_seconds = time.perf_counter() - started
        self._client: AsyncOpenAI | None = None
        # Called with each request's BatchStats when set (the serving benchmark counts tokens with it).
        self.on_batch: Callable[[BatchStats], None] | None = None
        logger.info("inference server %s serves %s (%d positions)", self.url, self.model_name, self.max_positions)

    @property
    def summary(self) -> str:
        """The engine and where it runs."""
        return f"{self.engine}, {self.url}, {self.model_name}"

    def _new_client(self, timeout: float) -> AsyncOpenAI:
        # Retries are ours (bounded by each request's deadline): the client's would repeat a timed-out generation.
        return AsyncOpenAI(base_url=self.url, api_key=self._api_key, timeout=timeout, max_retries=0)

    async def _check(self, wanted: str) -> tuple[str, int]:
        """The model to ask for and its positions, from ``/v1/models``; a one-line error if the server won't do."""
        client = self._new_client(CHECK_TIMEOUT)
        try:
            listed = (await client.models.list()).data
        except APIStatusError as error:
            raise ModelLoadError(f"INFERENCE_URL {self.url} answered {error.status_code}: {error.message}") from None
        except APIError as error:
            raise ModelLoadError(f"INFERENCE_URL {self.url} can't be reached: {error.message}") from None
        finally:
            await client.close()
        names = [model.id for model in listed]
        if wanted and wanted not in names:
            raise ModelLoadError(f"INFERENCE_MODEL {wanted} is not served at {self.url}; it serves {', '.join(names)}")
        if not wanted and len(names) != 1:
            raise ModelLoadError(
                f"{self.url} serves {len(names)} models ({', '.join(names) or 'none'}): set INFERENCE_MODEL to one"
            )
        chosen = next(model for model in listed if model.id == (wanted or names[0]))
        positions = (chosen.model_extra or {}).get("max_model_len") or self.codec.tokenizer.model_max_length
        return chosen.id, int(min(positions, 1 << 20))

    def clean_user_text(self, text: str) -> str:
        """The user's text without special tokens or invisible characters."""
        return self.codec.clean(text)

    def request_body(self, request: Request) -> dict[str, Any]:
        """The completion request for one reply: the prompt as ids, stops, limits and sampling."""
        sampling: Sampling = request.sampling
        values = asdict(sampling)
        prompt = self.codec.prompt_ids(request.turns, self.max_positions - sampling.max_new_tokens)
        return {
            "model": self.model_name,
            "prompt": prompt,
            "max_tokens": values["max_new_tokens"],
            "temperature": values["temperature"],
            "top_p": values["top_p"],
            # Strings too, for servers that don't know stop_token_ids.
            "stop": [FIRST_SPEAKER, SECOND_SPEAKER],
            # One stream per reply: its text shows as it comes, and closing it ends the generation.
            "stream": True,
            "stream_options": {"include_usage": True},
            "extra_body": {
                "top_k": values["top_k"],
                "repetition_penalty": values["repetition_penalty"],
                "stop_token_ids": list(self.tokens.speakers),
                # The pad token is never a word of a reply (vLLM caps a bias at ±100: as good as never).
                "logit_bias": {str(self.tokens.pad): -100},
            },
        }

    async def agenerate(self, request: Request) -> Outcome:
        """One reply from the server, streamed, retried where that is safe, never past the request's deadline.

        Its progress sees the text as it arrives; a stop closes the stream, which ends the generation on the server.
        """
        if self._client is None:
            self._client = self._new_client(CHECK_TIMEOUT)
        body = self.request_body(request)
        started = time.perf_counter()
        delay = _BACKOFF
        # The last failure retried: when time runs out after one, the server failed rather than was slow, and
        # the user hears so whether the deadline fell in the wait or in the next try.
        failure: APIError | None = None
        while True:
            left = request.deadline - time.monotonic()
            if left <= 0:
                break
            streamed = _Streamed()
            try:
                async with asyncio.timeout(left):
                    await self._receive(self._client, body, request.progress, streamed, left)
            except (TimeoutError, APITimeoutError):
                if streamed.text:
                    failure = None  # the server was answering this time, only too slowly
                break
            except (APIConnectionError, InternalServerError, RateLimitError) as error:
                wait = _retry_after(error) or min(delay, _MAX_BACKOFF) * random.uniform(0.75, 1.0)
                # A reply already partly shown can't start over: it would not go on from what was shown.
                if streamed.text or time.monotonic() + wait >= request.deadline:
                    raise self._failed(error) from None
                logger.info("inference server %s: %s; retrying in %.1f s", self.url, type(error).__name__, wait)
                failure = error
                await asyncio.sleep(wait)
                delay *= 2
                continue
            except APIError as error:
                raise self._failed(error) from None
            if self.on_batch is not None and streamed.usage is not None:
                used = (streamed.usage.completion_tokens,)
                self.on_batch(BatchStats((len(body["prompt"]),), used, time.perf_counter() - started))
            return request.outcome(self.codec.clean_reply(streamed.text), timed_out=False)
        if failure is not None:
            raise self._failed(failure)
        return Outcome("", timed_out=True)

    def _failed(self, error: APIError) -> RemoteInferenceError:
        """The error a failed request ends with: the server, what it answered, its message."""
        return RemoteInferenceError(f"{self.url}: {type(error).__name__}: {error.message}")

    async def _receive(
        self,
        client: AsyncOpenAI,
        body: dict[str, Any],
        progress: ReplyProgress | None,
        streamed: _Streamed,
        left: float,
    ) -> None:
        """Read one streamed completion into ``streamed``, until its end or the user's stop (the stream is closed)."""
        stream = await client.completions.create(**body, timeout=left)
        try:
            reading = self._read(stream, progress, streamed)
            await (reading if progress is None else until_stopped(reading, progress))
        finally:
            await stream.close()

    async def _read(self, stream: AsyncStream[Completion], progress: ReplyProgress | None, streamed: _Streamed) -> None:
        """Add each piece of text to ``streamed`` and show the text so far to ``progress``."""
        async for chunk in stream:
            if chunk.choices:
                streamed.text += chunk.choices[0].text
            if chunk.usage is not None:
                streamed.usage = chunk.usage
            if progress is not None and progress.poll(lambda: self.codec.clean_reply(streamed.text)):
                return

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.close()
            self._client = None
