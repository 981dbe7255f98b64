"""``tollway status``: one screen about a running gateway, read from its ``/metrics`` (two scrapes a
second apart, for the rates). Pure formatting over the parsed samples; the CLI fetches."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, x) in ls for k, x in labels.items()))


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, ls), v in samples.items():
        if n == name:
            key = dict(ls).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def quantile(samples: Samples, name: str, q: float) -> float | None:
    """A quantile of a histogram (all its label sets together), from its cumulative buckets."""
    buckets: dict[float, float] = {}
    for (n, ls), v in samples.items():
        if n == f"{name}_bucket":
            le = dict(ls).get("le", "+Inf")
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + v
    if not buckets:
        return None
    count = buckets.get(float("inf"), 0.0)
    if count <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= q * count:
            return bound
    return None


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _uptime(seconds: float) -> str:
    seconds = int(max(0, seconds))
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d " if d else "") + (f"{h}h " if d or h else "") + f"{m}m {s}s"


def render(url: str, first: Samples, second: Samples, elapsed: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    version = next((dict(ls).get("version", "?") for (n, ls) in second if n == "tollway_info"), "?")
    started = total(second, "tollway_start_time_seconds")
    requests = total(second, "tollway_requests_total")
    rate = (requests - total(first, "tollway_requests_total")) / max(elapsed, 1e-6)
    classes = by(second, "tollway_requests_total", "status_class")
    errors5, errors4 = classes.get("5xx", 0.0), classes.get("4xx", 0.0)
    share = f" ({100 * errors5 / requests:.1f}%)" if requests else ""
    lines = [f"Tollway {version} at {url}, up {_uptime(now - started) if started else '?'}",
             f"requests  {_human(requests)} total, {rate:.1f}/s now; 5xx {_human(errors5)}{share}, "
             f"4xx {_human(errors4)}"]
    p50 = quantile(second, "tollway_request_duration_seconds", 0.5)
    p99 = quantile(second, "tollway_request_duration_seconds", 0.99)
    if p50 is not None:
        lines.append(f"latency   p50 ≤ {p50 * 1000:.0f} ms, p99 ≤ {p99 * 1000 if p99 is not None else 0:.0f} ms "
                     "(histogram buckets)")
    tokens = by(second, "tollway_tokens_total", "direction")
    cost = total(second, "tollway_cost_micro_credits_total") / 1_000_000
    lines.append(f"tokens    in {_human(tokens.get('in', 0))}, out {_human(tokens.get('out', 0))}; "
                 f"charged {cost:.6f} credits")
    refusals = by(second, "tollway_refusals_total", "reason")
    if refusals:
        lines.append("refused   " + ", ".join(f"{k} {_human(v)}" for k, v in sorted(refusals.items())))
    pools = sorted(by(second, "tollway_pool_credentials", "provider"))
    if pools:
        lines.append(f"{'pool':<22}{'in flight':>10}{'queued':>8}{'cooling':>9}{'disabled':>10}{'creds':>7}")
        for p in pools:
            cells = [total(second, f"tollway_pool_{m}", provider=p)
                     for m in ("in_flight", "queued", "cooling_down", "disabled", "credentials")]
            lines.append(f"{p:<22}" + "".join(f"{c:>{w}.0f}" for c, w in zip(cells, (10, 8, 9, 10, 7), strict=True)))
    pending = by(second, "tollway_write_behind_pending", "buffer")
    dropped = by(second, "tollway_write_behind_dropped", "buffer")
    failures = by(second, "tollway_write_behind_failures_total", "buffer")
    if pending:
        lines.append("buffers   " + "; ".join(f"{b}: {pending[b]:.0f} pending, {dropped.get(b, 0):.0f} dropped, "
                                              f"{failures.get(b, 0):.0f} failed flushes" for b in sorted(pending)))
    tasks = by(second, "tollway_tasks", "status")
    if tasks or total(second, "tollway_tasks_running_here"):
        age = total(second, "tollway_tasks_oldest_pending_age_seconds")
        lines.append("tasks     " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(tasks.items()))
                     + f"; running here {total(second, 'tollway_tasks_running_here'):.0f}; oldest pending "
                     f"{_uptime(age) if age else '-'}")
    holds = total(second, "tollway_wallet_holds")
    if ("tollway_wallet_holds", ()) in second:
        lines.append(f"wallet    {holds:.0f} holds alive in this process")
    return "\n".join(lines)


def fetch(url: str, token: str, timeout: float = 5.0) -> str:
    import httpx

    r = httpx.get(url.rstrip("/") + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    if r.status_code != 200:
        raise RuntimeError(f"{url}/metrics answered {r.status_code}: {r.text[:200]}")
    return r.text


def status(url: str, token: str, interval: float = 1.0) -> str:
    first = parse(fetch(url, token))
    t0 = time.monotonic()
    time.sleep(interval)
    second = parse(fetch(url, token))
    return render(url, first, second, time.monotonic() - t0)

