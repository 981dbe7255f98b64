"""The ``env`` service (admin): runtime variables stored in the database, encrypted at rest.

- ``GET list``: every stored variable, its value masked (never the clear value).
- ``POST upsert {key, value}``: added, updated or unchanged.
- ``POST remove {key}``: removed, or 404.
- ``POST import {text}`` (or ``{env}``): a whole ``.env`` file, parsed by ``parse_env`` below.

After a write the gateway re-reads the variables and reconfigures providers at once
(``apply_env``); other processes follow through the change counter.

The ``.env`` syntax ``parse_env`` reads, one assignment per line:

- blank lines and ``# comments`` are ignored; ``export KEY=value`` is ``KEY=value``;
- ``KEY=`` is the empty value; spaces around ``=`` and the value are dropped;
- unquoted values end at an inline comment, a ``#`` after whitespace (``a#b`` keeps its ``#``);
- ``'single quotes'`` are literal; ``"double quotes"`` read ``\\n \\r \\t \\" \\\\`` escapes (any
  other backslash is kept); both may span lines; after the closing quote only a comment may follow;
- no ``${VAR}`` interpolation: values are taken as written;
- a line without ``=``, an invalid key, an unterminated quote or a value that cannot be stored
  is skipped with its line number and the reason; a key set twice takes the last value, and
  the earlier line is reported as skipped.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from tollway.core.catalog import EnvRequirement
from tollway.core.errors import InvalidRequest, NotFound, NotImplementedYet
from tollway.dialects.city.services import Caller, Kind, Service
from tollway.routing.call import Call
from tollway.store.env import EnvRepository, key_problem, value_problem

SOURCE = "database"
MASK_FROM = 16  # values at least this long show their first 4 and last 2 characters
MAX_IMPORT = 1000  # variables per import
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


class Skipped(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    key: str | None
    reason: str


class ParsedEnv(msgspec.Struct, frozen=True, kw_only=True):
    values: dict[str, str]  # the last value of each key, in the order keys first appear
    skipped: list[Skipped]  # by line


class _Unparsable(Exception):
    def __init__(self, reason: str, *, end: int | None = None) -> None:
        super().__init__(reason)
        self.end = end  # the line index the broken value ends on, when known


def mask(value: str) -> str:
    if not value:
        return ""
    if len(value) < MASK_FROM:
        return "***"
    return value[:4] + "…" + value[-2:]


def _unquoted(rest: str) -> str:
    for i, c in enumerate(rest):
        if c == "#" and i > 0 and rest[i - 1] in " \t":
            return rest[:i].strip()
    return rest.strip()


def _quoted(lines: list[str], start: int, text: str) -> tuple[str, int]:
    """The value of a quoted ``text`` (opening quote first) that begins on line index ``start``,
    and the index of the line where it ends."""
    quote, pos, line = text[0], 1, start
    out: list[str] = []
    while True:
        while pos < len(text):
            c = text[pos]
            if c == quote:
                tail = text[pos + 1:].strip()
                if tail and not tail.startswith("#"):
                    raise _Unparsable("unexpected text after the closing quote", end=line)
                return "".join(out), line
            if quote == '"' and c == "\\" and pos + 1 < len(text):
                out.append(_ESCAPES.get(text[pos + 1], "\\" + text[pos + 1]))
                pos += 2
                continue
            out.append(c)
            pos += 1
        line += 1
        if line >= len(lines):
            raise _Unparsable(f"unterminated quote: the closing {quote} is missing")
        out.append("\n")
        text, pos = lines[line], 0


def _trim_key(key: str) -> str | None:
    return (key if len(key) <= 64 else key[:64] + "…") or None


def parse_env(text: str) -> ParsedEnv:
    """A ``.env`` text's assignments and the lines it skipped (see the module doc)."""
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    values: dict[str, str] = {}
    where: dict[str, int] = {}
    skipped: list[Skipped] = []
    i = 0
    while i < len(lines):
        n, body = i + 1, lines[i].lstrip()  # the end may be inside a quoted value
        i += 1
        if not body.strip() or body.startswith("#"):
            continue
        if body.startswith("export") and body[6:7] in (" ", "\t"):
            body = body[6:].lstrip()
        if "=" not in body:
            skipped.append(Skipped(line=n, key=None, reason="no '=' on this line: not a KEY=value assignment"))
            continue
        raw_key, _, rest = body.partition("=")
        key = raw_key.strip()
        start = rest.lstrip(" \t")
        try:
            if start[:1] in ("'", '"'):
                value, last = _quoted(lines, n - 1, start)
                i = last + 1
            else:
                value = _unquoted(rest)
        except _Unparsable as exc:
            i = i if exc.end is None else exc.end + 1
            skipped.append(Skipped(line=n, key=_trim_key(key), reason=str(exc)))
            continue
        problem = key_problem(key) or value_problem(value)
        if problem is not None:
            skipped.append(Skipped(line=n, key=_trim_key(key), reason=problem))
            continue
        if key in where:
            skipped.append(Skipped(line=where[key], key=key,
                                   reason=f"{key} is set again on line {n}: the last one wins"))
        values[key] = value
        where[key] = n
    return ParsedEnv(values=values, skipped=sorted(skipped, key=lambda s: s.line))


# --- the service -------------------------------------------------------------------------


def env_repository(request: Request) -> EnvRepository:
    """The gateway's env repository (``gw.env_repo``, set by the app)."""
    repo = getattr(request.app.state.gateway, "env_repo", None)
    if not isinstance(repo, EnvRepository):
        raise NotImplementedYet("the env store is not configured on this gateway")
    return repo


async def _apply(request: Request) -> None:
    """This process picks the change up at once; the others through the change counter."""
    gw = request.app.state.gateway
    if hasattr(gw, "apply_env"):
        await gw.apply_env()


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise InvalidRequest(f"{name} is required", param=name)
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", param=name)
    return value


def _import_text(body: dict[str, Any]) -> str:
    if "text" in body and "env" in body:
        raise InvalidRequest("send the .env text as text or as env, not both", param="text")
    return _string(body, "env" if "env" in body else "text")


def _requirements() -> list[EnvRequirement]:
    return [EnvRequirement(key="TOLLWAY_SECRET_KEY", required=False,
                           description="encrypts the stored values; generated and kept in the database if unset")]


def env_service() -> Service:
    service = Service(id="env", name="Env", env=_requirements)
    admin: tuple[Kind, ...] = ("admin",)

    @service.action("list", methods=("GET",), allow=admin, summary="View the runtime env (values masked)")
    async def list_(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        entries = await env_repository(request).entries()
        return {"items": [{"key": e.key, "value": mask(e.value), "updated_at": e.updated_at, "source": SOURCE}
                          for e in entries]}

    @service.action("upsert", allow=admin, summary="Write an env variable")
    async def upsert(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        key, value = _string(body, "key"), _string(body, "value")
        result = await env_repository(request).upsert(key, value)
        if result != "unchanged":
            await _apply(request)
        return {"key": key, "result": result}

    @service.action("remove", allow=admin, summary="Delete an env variable")
    async def remove(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        key = _string(body, "key")
        if not await env_repository(request).remove(key):
            raise NotFound(f"no env variable {key}")
        await _apply(request)
        return {"key": key, "removed": True}

    @service.action("import", allow=admin, summary="Bulk import a .env text")
    async def import_(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        parsed = parse_env(_import_text(body))
        if len(parsed.values) > MAX_IMPORT:
            raise InvalidRequest(f"an import sets at most {MAX_IMPORT} variables, not {len(parsed.values)}",
                                 param="text")
        outcomes = await env_repository(request).upsert_many(parsed.values)
        if any(o != "unchanged" for o in outcomes.values()):
            await _apply(request)
        return {**{o: [k for k, v in outcomes.items() if v == o] for o in ("added", "updated", "unchanged")},
                "skipped": [msgspec.structs.asdict(s) for s in parsed.skipped]}

    return service
