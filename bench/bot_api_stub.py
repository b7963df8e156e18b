"""A Bot API stand-in for the streaming benchmark: answers every call with ``{"ok": true, "result": true}``.

Run as ``python -m bench.bot_api_stub``: it prints its port and serves on 127.0.0.1 until its stdin closes.
A process of its own, so its work never holds the benchmarked bot's interpreter (it does share the CPU).
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def _answer(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"ok": True, "result": True})


async def _serve() -> None:
    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", _answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sys.stdout.write(f"{runner.addresses[0][1]}\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(_serve())
