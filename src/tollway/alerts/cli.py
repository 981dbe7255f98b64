"""``tollway alerts list | add | remove | test``: the alert rules on the database, as the admin API
writes them (``tollway.cli`` registers the command with ``add_parser``).

``add`` takes the rule's fields as flags (``--kind``, ``--webhook``, ``--threshold``, ...); a
``--webhook`` or ``--secret`` of ``-`` is read from stdin, to keep its token out of the shell
history. ``test`` sends a test alert to the rule's webhook from this process.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import Any

from tollway.alerts.config import FORMATS, KINDS, listed, validate
from tollway.alerts.sender import Webhooks, test_alert
from tollway.auth.secret_box import SecretBox, load_secret_key
from tollway.config import Settings, load_settings
from tollway.core.errors import ConfigError
from tollway.store.alerts import AlertRepository
from tollway.store.db import create_engine, migrate
from tollway.store.meta import MetaRepository


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings({k: getattr(args, k, None) for k in ("data_dir", "config_file")})


def _stdin(value: str | None) -> str | None:
    return sys.stdin.readline().rstrip("\n") if value == "-" else value


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": args.kind, "webhook": _stdin(args.webhook), "format": args.format,
                            "enabled": not args.disabled}
    for name in ("name", "threshold", "minutes", "window", "min_requests", "debounce"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.secret is not None:
        body["secret"] = _stdin(args.secret)
    filters = {k: getattr(args, k) for k in ("key_id", "model", "provider") if getattr(args, k) is not None}
    if filters:
        body["filter"] = filters
    return body


def _line(item: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={item[k]}" for k in ("threshold", "minutes", "window", "min_requests")
                       if item.get(k) is not None)
    filters = ", ".join(f"{k}={v}" for k, v in item["filter"].items())
    state = "on" if item["enabled"] else "off"
    return (f"{item['id']:>4}  {item['kind']:<20} {state:<4} {item['format']:<7} {str(item['debounce']) + 'm':>8}  "
            f"{item['webhook']:<32} {params}{'  [' + filters + ']' if filters else ''}"
            f"{'  ' + item['name'] if item['name'] else ''}")


def cmd_alerts(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        migrate(settings.database_url)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"database is not usable: {type(exc).__name__}: {detail}") from None

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            box = SecretBox(await load_secret_key(settings.env, MetaRepository(engine)))
            return await _run(args, settings, AlertRepository(engine), box)
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def _run(args: argparse.Namespace, settings: Settings, repo: AlertRepository, box: SecretBox) -> int:
    if args.alerts_cmd == "list":
        rules, total = await repo.page(limit=10_000)
        print(f"{'id':>4}  {'kind':<20} {'on':<4} {'format':<7} {'debounce':>8}  {'webhook':<32} parameters")
        for rule in rules:
            print(_line(listed(box, rule)))
        print(f"{total} rule(s)")
    elif args.alerts_cmd == "add":
        rule = await repo.create(validate(box, _body(args), None))
        print(f"added alert rule {rule.id}:")
        print(_line(listed(box, rule)))
    elif args.alerts_cmd == "remove":
        if not await repo.delete(args.id):
            print(f"no alert rule with id {args.id}", file=sys.stderr)
            return 1
        print(f"removed alert rule {args.id}")
    elif args.alerts_cmd == "test":
        found = await repo.get(args.id)
        if found is None:
            print(f"no alert rule with id {args.id}", file=sys.stderr)
            return 1
        name = settings.env.get("TOLLWAY_ALERT_GATEWAY_NAME") or socket.gethostname()
        webhooks = Webhooks()
        try:
            delivery = await webhooks.deliver(box, found, test_alert(found, name, time.time()))
        finally:
            await webhooks.close()
        if not delivery.ok:
            print(f"FAILED  rule {found.id}: {delivery.error}", file=sys.stderr)
            return 1
        print(f"ok  rule {found.id}: HTTP {delivery.status}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tollway alerts ...`` on ``tollway.cli``'s subcommands."""

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", dest="data_dir", help="state directory (TOLLWAY_DATA_DIR, ./.tollway)")
        sp.add_argument("--config", dest="config_file", help="YAML config file (TOLLWAY_CONFIG)")

    a: argparse.ArgumentParser = subparsers.add_parser(
        "alerts", help="list, add, remove and test alert rules (webhooks)")
    common(a)
    sub = a.add_subparsers(dest="alerts_cmd", required=True)
    al = sub.add_parser("list")
    aa = sub.add_parser("add")
    aa.add_argument("--kind", required=True, choices=KINDS)
    aa.add_argument("--webhook", required=True, help="http(s) URL; '-' reads it from stdin")
    aa.add_argument("--format", default="json", choices=FORMATS)
    aa.add_argument("--secret", help="Feishu's signing secret (format feishu); '-' reads it from stdin")
    aa.add_argument("--name")
    aa.add_argument("--threshold", help="credits (low_balance), 0..1 (error_rate), ms (latency_p99), "
                                         "a count (task_failures)")
    aa.add_argument("--minutes", type=int, help="credential: cooling longer than; stranded_settlement: older than")
    aa.add_argument("--window", type=int, help="minutes looked back (error_rate, latency_p99, task_failures)")
    aa.add_argument("--min-requests", dest="min_requests", type=int)
    aa.add_argument("--debounce", type=int, help="minutes between two alerts of one subject (60)")
    aa.add_argument("--key-id", dest="key_id", type=int, help="only this key")
    aa.add_argument("--model", help="only this model")
    aa.add_argument("--provider", help="only this provider")
    aa.add_argument("--disabled", action="store_true", help="store it switched off")
    ar = sub.add_parser("remove")
    ar.add_argument("id", type=int)
    at = sub.add_parser("test")
    at.add_argument("id", type=int)
    for sp in (al, aa, ar, at):
        common(sp)
    a.set_defaults(fn=cmd_alerts)
    return a
