"""A started gateway has imported only what its configuration uses (issue 19: start-up time and
idle memory). Run in a fresh interpreter: this test process has imported everything already."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from starlette.testclient import TestClient
from tollway.app import create_app

# the default configuration: SQLite, no Redis, no tracing, no Bedrock, no OAuth, no alert rules
with TestClient(create_app()) as client:
    assert client.get("/healthz").status_code == 200
    lazy = ("tollway.console", "jinja2", "redis", "opentelemetry", "aiohttp", "yarl", "yaml", "jwt", "botocore",
            "authlib", "alembic")
    loaded = sorted(m for m in lazy if m in sys.modules)
    print("loaded:", " ".join(loaded))
    page = client.get("/ui/signin")  # the console, imported by its first request
    print("console:", page.status_code, "tollway.console" in sys.modules, "<form" in page.text)
"""
MIGRATE = "from tollway.config import load_settings; from tollway.store.db import migrate; " \
          "migrate(load_settings().database_url)"


def test_a_started_gateway_imports_only_what_it_uses(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TOLLWAY_DATA_DIR": str(tmp_path), "TOLLWAY_ADMIN_KEY": "lazy-admin-key-1234"}
    for code in (MIGRATE, SCRIPT):  # an existing database: the gateway's usual start
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
    said = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    assert said["loaded"].strip() == "", f"imported at start although unused: {said['loaded']}"
    assert said["console"].split() == ["200", "True", "True"]
