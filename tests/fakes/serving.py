"""A fake's aiohttp application served on 127.0.0.1 (a free port) from a thread of its own, with
its own event loop, so tests drive it from synchronous code and from another loop alike."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


class InThread:
    """``serve(name, app)`` starts it (``port`` set when it returns); ``stop`` ends it."""

    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (what an OTLP exporter's endpoint and a webhook URL start with)."""
        return f"http://127.0.0.1:{self.port}"

    def serve(self, name: str, build: Callable[[], web.Application]) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            runner = web.AppRunner(build(), handle_signals=False, shutdown_timeout=0.1)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
