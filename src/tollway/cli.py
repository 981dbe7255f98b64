"""``tollway serve | keys | credentials | models | migrate``: the commands call the same services
as the admin API."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from tollway.alerts.cli import add_parser as add_alerts_parser
from tollway.auth.key_service import KeyService, admin_hash_of, ensure_admin_secret
from tollway.auth.secret_box import SecretBox, load_secret_key
from tollway.config import Settings, load_settings
from tollway.core.errors import ConfigError, TollwayError
from tollway.core.money import MICRO
from tollway.store.db import create_engine, migrate
from tollway.store.keys import KeyRepository
from tollway.store.meta import MetaRepository
from tollway.store.tasks import TaskRepository


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: getattr(args, k, None) for k in ("host", "port", "workers", "data_dir", "config_file")}
    return load_settings(overrides)


def _migrate(settings: Settings) -> None:
    """Migrations, with a database or data-directory problem as one line instead of a traceback."""
    try:
        migrate(settings.database_url)
    except Exception as exc:
        scheme = settings.database_url.split("://", 1)[0]
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"database ({scheme}) is not usable: {type(exc).__name__}: {detail}") from None


def _with_engine(settings: Settings, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def uvicorn_options(settings: Settings, log_level: str = "info") -> dict[str, Any]:
    """How ``tollway serve`` runs uvicorn (besides the app): the guarded HTTP protocol, and
    forwarded headers believed only from TOLLWAY_TRUSTED_PROXIES (uvicorn's own default trusts
    127.0.0.1, so anything on the same host could name any client address)."""
    from tollway.server import GuardedHttpToolsProtocol

    trusted = list(settings.trusted_proxies)
    return {
        "host": settings.host, "port": settings.port, "workers": settings.workers, "loop": "uvloop",
        "http": functools.partial(GuardedHttpToolsProtocol, limits=settings.connections),
        "ws": "none",  # no route speaks WebSocket: an upgrade is not handed to another protocol
        "proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None,
        "timeout_keep_alive": settings.keepalive_timeout, "log_level": log_level, "access_log": False,
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_grace)), "lifespan": "on",
    }


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tollway.app import build_catalog

    settings = _settings(args)
    if settings.workers > 1 and not settings.redis_url:
        # balances, holds, rate limits and pool caps must be one set for every worker
        print("tollway serve: --workers above 1 needs TOLLWAY_REDIS_URL: workers share balances, rate limits "
              "and credential caps through Redis", file=sys.stderr)
        return 2
    build_catalog(settings)  # a config that cannot work fails here, before anything starts
    _migrate(settings)
    async def prepare(engine: Any) -> str | None:
        meta = MetaRepository(engine)
        _, generated = await ensure_admin_secret(meta, settings.admin_key)
        # the env store's key: made once before any worker starts; a wrong one stops here, in one line
        await load_secret_key(settings.env, meta)
        return generated

    generated = _with_engine(settings, prepare)
    # workers re-read settings from the environment: hand the flags down that way
    os.environ.update({"TOLLWAY_HOST": settings.host, "TOLLWAY_PORT": str(settings.port),
                       "TOLLWAY_DATA_DIR": settings.data_dir})
    if settings.config_file:
        os.environ["TOLLWAY_CONFIG"] = settings.config_file
    if settings.workers > 1 and settings.metrics:  # every worker's counters, added up by whichever is scraped
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir(settings.data_dir)
    print(f"Tollway listening on http://{settings.host}:{settings.port}", flush=True)
    if generated:
        print(f"admin key: {generated}   (generated now, stored hashed: this is the only time it is shown)",
              flush=True)
    elif settings.admin_key:
        print("admin key: from TOLLWAY_ADMIN_KEY", flush=True)
    else:
        print("admin key: set at first start (stored hashed); set TOLLWAY_ADMIN_KEY to choose one", flush=True)
    uvicorn.run("tollway.app:create_app", factory=True, **uvicorn_options(settings, args.log_level))
    return 0


def _metrics_dir(data_dir: str) -> str:
    """A fresh directory for prometheus-client's multiprocess files (the last run's are stale)."""
    import shutil

    path = Path(data_dir) / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return str(path.resolve())


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _migrate(settings)
    print(f"database is at the newest revision: {settings.database_url.split('://')[0]}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _migrate(settings)

    async def run(engine: Any) -> int:
        admin_hash = await admin_hash_of(MetaRepository(engine), settings.admin_key)
        service = KeyService(KeyRepository(engine), admin_hash=admin_hash)
        if args.keys_cmd == "create":
            key, secret = await service.create(name=args.name, role=args.role, email=args.email,
                                               group_id=args.group_id)
            print(f"id: {key.id}\nkey: {secret}\n(shown once; stored as a hash with prefix {key.prefix})")
        elif args.keys_cmd == "list":
            keys, total = await service.repo.list(limit=10_000, include_revoked=args.all)
            print(f"{'id':>4}  {'prefix':<11} {'role':<6} {'state':<8} name")
            for k in keys:
                state = "revoked" if k.revoked_at else ("enabled" if k.enabled else "disabled")
                print(f"{k.id:>4}  {k.prefix:<11} {k.role:<6} {state:<8} {k.name}")
            print(f"{total} key(s)")
        elif args.keys_cmd == "revoke":
            found = await service.find(args.key)
            if found is None or not await service.revoke(found.id):
                print(f"no active key matches {args.key!r}", file=sys.stderr)
                return 1
            print(f"revoked key {found.id} ({found.prefix}...)")
        return 0

    return int(_with_engine(settings, run))


def cmd_tasks(args: argparse.Namespace) -> int:
    """Tasks in the database: list, show one (JSON), cancel one (the process running it sees the
    cancel within a second and releases its hold)."""
    settings = _settings(args)
    _migrate(settings)

    async def run(engine: Any) -> int:
        repo = TaskRepository(engine)
        if args.tasks_cmd == "list":
            tasks = await repo.page(status=args.status, kind=args.kind, limit=args.limit)
            print(f"{'id':<30} {'kind':<6} {'status':<10} {'progress':>8}  {'cost':>10}  {'owner':<12} model")
            for t in tasks:
                progress = f"{t.progress}%" if t.progress is not None else "-"
                print(f"{t.id:<30} {t.kind:<6} {t.status:<10} {progress:>8}  {t.cost_micro / MICRO:>10.6f}  "
                      f"{t.owner:<12} {t.model}")
            print(f"{len(tasks)} task(s)")
            return 0
        if args.tasks_cmd == "show":
            task = await repo.get(args.id)
            if task is None:
                print(f"no task {args.id!r}", file=sys.stderr)
                return 1
            print(msgspec.json.format(msgspec.json.encode(task)).decode())
            return 0
        task = await repo.cancel(args.id, None)
        if task is None:
            print(f"no task {args.id!r}", file=sys.stderr)
            return 1
        print(f"task {task.id} is {task.status}")
        return 0 if task.status == "cancelled" else 1

    return int(_with_engine(settings, run))


def cmd_status(args: argparse.Namespace) -> int:
    """One screen about a running gateway, from its /metrics (a metrics token or the admin key)."""
    from tollway.telemetry.status import status

    settings = load_settings({"host": args.host, "port": args.port})
    url = args.url or f"http://{settings.host}:{settings.port}"
    token = args.token or settings.env.get("TOLLWAY_METRICS_TOKEN") or settings.admin_key
    if not token:
        print("tollway status: give --token (a metrics token or the admin key), or set TOLLWAY_METRICS_TOKEN or "
              "TOLLWAY_ADMIN_KEY", file=sys.stderr)
        return 2
    try:
        print(status(url, token))
    except Exception as exc:
        print(f"tollway status: {exc}", file=sys.stderr)
        return 1
    return 0


def _arg_secret(value: str | None) -> str | None:
    """A secret flag's value; ``-`` reads it from stdin (keeps it out of the shell history)."""
    return sys.stdin.readline().rstrip("\n") if value == "-" else value


def cmd_credentials(args: argparse.Namespace) -> int:
    """Seed 002's accounts (run-time upstream credentials) on the database, as the admin API does."""
    from tollway.admin.ds2api import AccountBook, probe, probe_route
    from tollway.app import build_catalog, provider_configs
    from tollway.providers.base import ProviderContext
    from tollway.providers.kinds import build_provider
    from tollway.providers.media import MediaFetcher
    from tollway.store.credentials import CredentialRepository, preview

    settings = _settings(args)
    _migrate(settings)
    configs = provider_configs(settings)

    async def run(engine: Any) -> int:
        box = SecretBox(await load_secret_key(settings.env, MetaRepository(engine)))  # accounts' secrets are sealed
        book = AccountBook(CredentialRepository(engine, box), list(configs),
                           {name: cfg.credentials for name, cfg in configs.items()})
        if args.cred_cmd == "list":
            accounts = await book.accounts(book.provider(args.provider) if args.provider else None)
            print(f"{'identifier':<32} {'provider':<12} {'email / mobile':<28} {'password':<8} token")
            for c in accounts:
                print(f"{c.id:<32} {c.provider:<12} {c.email or c.mobile or '-':<28} "
                      f"{'yes' if c.password else 'no':<8} {preview(c.secret) or '-'}")
            print(f"{len(accounts)} account(s)")
        elif args.cred_cmd == "add":
            item = {"email": args.email, "mobile": args.mobile, "id": args.id,
                    "password": _arg_secret(args.password), "token": _arg_secret(args.token),
                    "api_key": _arg_secret(args.api_key)}
            account = book.parse({k: v for k, v in item.items() if v is not None}, book.provider(args.provider))
            await book.add(account)
            print(f"added {account.id} to provider {account.provider} (token {preview(account.secret) or '-'})")
        elif args.cred_cmd == "remove":
            provider = book.provider(args.provider)
            if not await book.remove(args.identifier, provider):
                print(f"no account {args.identifier!r} in provider {provider!r}", file=sys.stderr)
                return 1
            print(f"removed {args.identifier} from provider {provider}")
        elif args.cred_cmd == "test":
            provider = book.provider(args.provider)
            found = await book.find(args.identifier, provider)
            credential = found.credential() if found else next(
                (c for c in configs[provider].credentials if args.identifier == c.id), None)
            if credential is None:
                print(f"no account {args.identifier!r} in provider {provider!r}", file=sys.stderr)
                return 1
            route = probe_route(build_catalog(settings, configs), provider, args.model or "")
            media = MediaFetcher(settings.media)
            adapter = build_provider(configs[provider], ProviderContext(timeouts=settings.timeouts, media=media))
            try:
                result, _ = await probe(adapter, route, credential, args.message or "",
                                        password=found.password if found else None)
            finally:
                await adapter.close()
                await media.close()
            state = "ok" if result["success"] else "FAILED"
            print(f"{state}  {result['account']}  {result['model']}  {result['response_time']} ms  {result['message']}")
            return 0 if result["success"] else 1
        return 0

    return int(_with_engine(settings, run))


def cmd_models(args: argparse.Namespace) -> int:
    from tollway.app import build_catalog

    settings = _settings(args)
    catalog = build_catalog(settings)
    print(f"{'model':<28} {'provider':<12} {'callable':<9} needs")
    for model in sorted(catalog.known.values(), key=lambda m: (m.provider, m.id)):
        ok = catalog.callable(model)
        if not ok and not args.all:
            continue
        spec = catalog.specs.get(model.provider)
        needs = ", ".join(r.key for r in (spec.env_requirements if spec else ()) if r.required)
        print(f"{model.id:<28} {model.provider:<12} {'yes' if ok else 'no':<9} {needs}")
    open_providers = catalog.open_providers()
    if open_providers:
        print("also callable as <provider>/<model>: " + ", ".join(open_providers))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollway", description="Tollway LLM API gateway")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", dest="data_dir", help="state directory (TOLLWAY_DATA_DIR, ./.tollway)")
        sp.add_argument("--config", dest="config_file", help="YAML config file (TOLLWAY_CONFIG)")

    s = sub.add_parser("serve", help="run the gateway")
    common(s)
    s.add_argument("--host", help="bind address (127.0.0.1)")
    s.add_argument("--port", type=int, help="port (4000)")
    s.add_argument("--workers", type=int, help="worker processes (1)")
    s.add_argument("--log-level", dest="log_level", default="warning")
    s.set_defaults(fn=cmd_serve)

    m = sub.add_parser("migrate", help="apply database migrations")
    common(m)
    m.set_defaults(fn=cmd_migrate)

    mo = sub.add_parser("models", help="list the model catalog and what each model needs")
    common(mo)
    mo.add_argument("--all", action="store_true", help="also models whose provider is not configured")
    mo.set_defaults(fn=cmd_models)

    k = sub.add_parser("keys", help="create, list and revoke API keys")
    common(k)
    ks = k.add_subparsers(dest="keys_cmd", required=True)
    kc = ks.add_parser("create")
    kc.add_argument("--name", default="")
    kc.add_argument("--role", default="user", choices=["user", "admin"])
    kc.add_argument("--email", default="")
    kc.add_argument("--group-id", dest="group_id", type=int, help="0..2147483647")
    kl = ks.add_parser("list")
    kl.add_argument("--all", action="store_true", help="include revoked keys")
    kr = ks.add_parser("revoke")
    kr.add_argument("key", help="key id, full key, or its displayed prefix")
    for sp in (kc, kl, kr):
        common(sp)
    k.set_defaults(fn=cmd_keys)

    c = sub.add_parser("credentials", help="list, add, remove and test upstream accounts (seed 002)")
    common(c)
    cs = c.add_subparsers(dest="cred_cmd", required=True)
    cl = cs.add_parser("list")
    cl.add_argument("--provider", help="only this provider's accounts")
    ca = cs.add_parser("add")
    ca.add_argument("--email")
    ca.add_argument("--mobile")
    ca.add_argument("--id", help="a name for an API-key credential")
    ca.add_argument("--password", help="'-' reads it from stdin")
    ca.add_argument("--token", help="a session token; '-' reads it from stdin")
    ca.add_argument("--api-key", dest="api_key", help="an API key; '-' reads it from stdin")
    cr = cs.add_parser("remove")
    cr.add_argument("identifier", help="email, mobile, id or token:<hash>")
    ct = cs.add_parser("test")
    ct.add_argument("identifier", help="email, mobile, id or token:<hash>")
    ct.add_argument("--model")
    ct.add_argument("--message")
    for sp in (ca, cr, ct):
        sp.add_argument("--provider", help="default: the first configured provider that is not echo")
    for sp in (cl, ca, cr, ct):
        common(sp)
    c.set_defaults(fn=cmd_credentials)

    st = sub.add_parser("status", help="one screen about a running gateway (from its /metrics)")
    st.add_argument("--url", help="the gateway's base URL (http://TOLLWAY_HOST:TOLLWAY_PORT)")
    st.add_argument("--host")
    st.add_argument("--port", type=int)
    st.add_argument("--token", help="a metrics token or the admin key (TOLLWAY_METRICS_TOKEN, TOLLWAY_ADMIN_KEY)")
    st.set_defaults(fn=cmd_status)

    t = sub.add_parser("tasks", help="list, show and cancel tasks (images, videos)")
    common(t)
    ts = t.add_subparsers(dest="tasks_cmd", required=True)
    tl = ts.add_parser("list")
    tl.add_argument("--status", choices=["pending", "running", "succeeded", "failed", "cancelled"])
    tl.add_argument("--kind", choices=["image", "video"])
    tl.add_argument("--limit", type=int, default=50)
    tsh = ts.add_parser("show")
    tsh.add_argument("id")
    tc = ts.add_parser("cancel")
    tc.add_argument("id")
    for sp in (tl, tsh, tc):
        common(sp)
    t.set_defaults(fn=cmd_tasks)
    add_alerts_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except TollwayError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
