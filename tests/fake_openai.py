"""A fake OpenAI-compatible inference server (what `vllm serve` offers) on 127.0.0.1, for tests.

GET /v1/models lists its models; POST /v1/completions records the request and answers with
``reply`` (a function of the request body), or fails as ``fail_next`` says: an HTTP status, "slow"
(answer after ``slow_seconds``), or "drop" (close the connection without an answer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web

Reply = Callable[[dict[str, Any]], str]


class FakeOpenAI:
    """An aiohttp server speaking enough of the OpenAI API for the bot's remote backend."""

    def __init__(
        self, models: tuple[str, ...] = ("rudialogpt",), api_key: str = "", max_model_len: int = 512, port: int = 0
    ) -> None:
        self.models = models
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.reply: Reply = lambda body: " привет, как дела?"
        self.slow_seconds = 5.0
        self._faults: list[int | str] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL the bot's INFERENCE_URL takes."""
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, *faults: int | str) -> None:
        """Make the next completions fail, one fault each: a status such as 500 or 429, "slow" or "drop"."""
        self._faults.extend(faults)

    async def start(self) -> Self:
        """Serve (on a free port unless one was given; the same port again after a stop)."""
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Stop serving: connections are refused until ``start`` again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _authorised(self, request: web.Request) -> bool:
        return not self.api_key or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": self.max_model_len}
            for name in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        body = await request.json()
        self.requests.append(body)
        fault = self._faults.pop(0) if self._faults else None
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif isinstance(fault, int):
            headers = {"Retry-After": "1"} if fault == 429 else {}
            error = {"error": {"message": f"injected {fault}", "type": "error", "code": fault}}
            return web.json_response(error, status=fault, headers=headers)
        text = self.reply(body)
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop", "stop_reason": None}
        return web.json_response(
            {
                "id": f"cmpl-{len(self.requests)}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [choice],
                "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 3, "total_tokens": 0},
            }
        )
