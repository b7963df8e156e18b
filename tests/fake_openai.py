"""A fake OpenAI-compatible inference server (what `vllm serve` offers) on 127.0.0.1, for tests.

GET /v1/models lists its models; POST /v1/completions records the request and answers with
``reply`` (a function of the request body), or fails as ``fail_next`` says: an HTTP status, "slow"
(answer after ``slow_seconds``), or "drop" (close the connection without an answer). A request with
``"stream": true`` gets the reply as server-sent events, in ``pieces`` (a few characters each, as tokens
come), a last piece with the token counts when ``stream_options.include_usage`` asks, and ``[DONE]``;
with ``hold_after`` set, the stream waits after that many pieces until ``release`` is set or the client
closes it (counted in ``closed_early``).
"""

from __future__ import annotations

import asyncio
import json
import re
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
        self.pieces: Callable[[str], list[str]] = lambda text: re.findall(r"\s*\S{1,3}|\s+$", text)
        self.hold_after: int | None = None
        self.release = asyncio.Event()
        self.closed_early = 0
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
        if body.get("stream"):
            return await self._stream(request, body, text)
        return web.json_response(self._completion(body, [self._choice(text, "stop")], self._usage(body)))

    def _completion(self, body: dict[str, Any], choices: list[dict[str, Any]], usage: dict | None) -> dict[str, Any]:
        return {
            "id": f"cmpl-{len(self.requests)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": choices,
            "usage": usage,
        }

    @staticmethod
    def _choice(text: str, finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}

    @staticmethod
    def _usage(body: dict[str, Any]) -> dict[str, int]:
        return {"prompt_tokens": len(body["prompt"]), "completion_tokens": 3, "total_tokens": 0}

    async def _stream(self, request: web.Request, body: dict[str, Any], text: str) -> web.StreamResponse:
        """The reply as server-sent events, piece by piece, as vLLM streams a completion."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        events = [self._completion(body, [self._choice(piece, None)], None) for piece in self.pieces(text)]
        events.append(self._completion(body, [self._choice("", "stop")], None))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(self._completion(body, [], self._usage(body)))
        for index, event in enumerate(events):
            if index == self.hold_after and not await self._released(request):
                self.closed_early += 1
                return response
            await response.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _released(self, request: web.Request) -> bool:
        """Wait for ``release``; False if the client closed the stream first."""
        while not self.release.is_set():
            if request.transport is None or request.transport.is_closing():
                return False
            await asyncio.sleep(0.01)
        return True
