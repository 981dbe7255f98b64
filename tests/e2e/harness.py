"""Start ``tollway serve`` as a real process on a free loopback port and talk to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ADMIN_KEY = "tw-admin-test-secret-0123456789"
_PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "OLLAMA_BASE_URL",
                 "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GEMINI_API_KEY", "GEMINI_BASE_URL",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_PROFILE", "BEDROCK_BASE_URL", "TOLLWAY_MEDIA_ALLOW_PRIVATE",
                 "TOLLWAY_DATABASE_URL", "TOLLWAY_REDIS_URL", "TOLLWAY_CONFIG", "TOLLWAY_ADMIN_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    def __init__(self, workdir: Path, *, env: dict[str, str] | None = None, config: dict[str, Any] | None = None,
                 admin_key: str | None = ADMIN_KEY, workers: int = 1) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.log_path = workdir / f"gateway-{self.port}.log"
        self.env = {k: v for k, v in os.environ.items() if k not in _PROVIDER_ENV}
        self.env.update({"TOLLWAY_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"})
        if admin_key:
            self.env["TOLLWAY_ADMIN_KEY"] = admin_key
        if config is not None:
            path = workdir / "tollway.yaml"
            path.write_text(yaml.safe_dump(config))
            self.env["TOLLWAY_CONFIG"] = str(path)
        self.env.update(env or {})
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tollway.db"

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tollway.cli", "serve", "--port", str(self.port),
                 "--workers", str(self.workers), "--log-level", "info"],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not answer /healthz within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)

    def create_key(self, name: str = "test") -> str:
        with self.admin() as client:
            r = client.post("/admin/api-key/apply", json={"name": name, "role": "user"})
            r.raise_for_status()
            return str(r.json()["api_key"])


def fake_config(fake_base_url: str, secret: str) -> dict[str, Any]:
    return {
        "providers": [{"name": "fake", "kind": "openai_compatible", "base_url": fake_base_url,
                       "credentials": [{"id": "fake-1", "api_key": secret}]}],
        "models": [{"id": "fake-chat", "provider": "fake", "upstream_id": "upstream-chat",
                    "display_name": "Fake chat"}],
        "aliases": {"my-alias": "fake-chat"},
    }
