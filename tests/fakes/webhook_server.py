"""A webhook receiver: one aiohttp server on 127.0.0.1, in its own thread, recording the JSON
posted to each path.

``received[path]`` lists the bodies (``headers[path]`` their headers). A path may be scripted:
``fail[path] = [500, 500]`` answers those statuses first (then 200); ``feishu[path] = secret``
makes the path a Feishu custom bot with signature verification: it checks ``timestamp`` and
``sign`` as Feishu does (base64 of HMAC-SHA256 keyed with ``"{timestamp}\\n{secret}"`` over an
empty message, the timestamp within an hour) and answers ``{"code": 19021, "msg": "sign match
fail or timestamp is not within one hour from current time"}`` when they do not match, else
``{"code": 0, "msg": "success"}``; a body without ``msg_type: text`` and ``content.text`` is
answered ``{"code": 19002}``. ``bad_signatures`` counts the refusals. Slack's answer (``ok``) is
sent for ``/slack...`` paths, ``{"ok": true}`` for the rest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import defaultdict
from typing import Any

from aiohttp import web

from tests.fakes.serving import InThread


def feishu_signature(timestamp: str, secret: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class WebhookServer(InThread):
    def __init__(self) -> None:
        self.received: dict[str, list[Any]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.fail: dict[str, list[int]] = {}
        self.feishu: dict[str, str] = {}
        self.bad_signatures = 0
        self.port = 0
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return self.base_url + path

    def bodies(self, path: str) -> list[Any]:
        with self._lock:
            return list(self.received.get(path, []))

    def wait_for(self, path: str, count: int, timeout: float = 15.0) -> list[Any]:
        """The bodies posted to ``path`` once there are at least ``count`` (or what came by the deadline)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.bodies(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.bodies(path)

    async def _hook(self, request: web.Request) -> web.Response:
        path = request.path
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = {"__raw__": raw.decode(errors="replace")}
        with self._lock:
            self.received[path].append(body)
            self.headers[path].append(dict(request.headers))
            scripted = self.fail.get(path)
            status = scripted.pop(0) if scripted else 200
        if status != 200:
            return web.json_response({"error": "scripted failure"}, status=status)
        if path in self.feishu:
            return web.json_response(self._feishu(self.feishu[path], body))
        if path.startswith("/slack"):
            return web.Response(text="ok")
        return web.json_response({"ok": True})

    def _feishu(self, secret: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("msg_type") != "text" or not isinstance(body.get("content"), dict) \
                or not isinstance(body["content"].get("text"), str):
            return {"code": 19002, "msg": "params error, msg_type need"}
        stamp, sign = body.get("timestamp"), body.get("sign")
        fresh = isinstance(stamp, str) and stamp.isdigit() and abs(time.time() - int(stamp)) < 3600
        if not (fresh and isinstance(sign, str) and hmac.compare_digest(sign, feishu_signature(str(stamp), secret))):
            with self._lock:
                self.bad_signatures += 1
            return {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}
        return {"code": 0, "msg": "success", "data": {}}

    def start(self) -> WebhookServer:
        self.serve("fake-webhooks", self._app)
        return self

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._hook)
        return app
