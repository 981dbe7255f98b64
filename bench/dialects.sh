#!/usr/bin/env bash
# What translation costs: the same upstream (the shared kit's OpenAI-compatible mock) called by an
# OpenAI client (byte pass-through) and by an Anthropic client (/v1/messages, translated both ways),
# non-stream and stream, one Tollway worker, key auth and request logging on, SQLite.
# CASES picks the cases (default: the four above); the Responses API adds responses-json and
# responses-stream (passed through to the mock's /v1/responses, stored: one database write each),
# responses-nostore-json (store: false), and responses-tr-json / responses-tr-stream (the same
# requests to a chat-only provider, "chatonly", on the same mock: translated to chat and back).
#   CASES="openai-json openai-stream responses-json responses-stream responses-nostore-json \
#          responses-tr-json responses-tr-stream" bench/dialects.sh
# Prints req/s (wrk) and gateway CPU ms per request (from /proc) for each, interleaved ROUNDS times,
# then a table (per round and median) and, per build, translated minus pass-through CPU ms/req.
#
#   bench/dialects.sh                      # the repo's .venv; ROUNDS=3 DURATION=10 CONC=16 WARMUP=3
#   BUILDS="before=/tmp/tollway-before/.venv after=$PWD/.venv" bench/dialects.sh
#
# BUILDS is "name=venv ..." : one gateway per build (port PORT, PORT+1, ...; own data dir), started
# once; in every round each case runs on every build back to back (build order rotated per round),
# so machine noise hits all builds alike. A "before" build: git worktree add /tmp/tollway-before REV,
# then python3 -m venv /tmp/tollway-before/.venv && /tmp/tollway-before/.venv/bin/pip install -e it.
#
# Output goes to $OUT (default /tmp/tollway-dialects-<time>), never into the repository.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
BUILDS="${BUILDS:-main=$VENV}"
OUT="${OUT:-/tmp/tollway-dialects-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"   # seconds of each case on each build before round 1, not recorded; 0 = none
CONC="${CONC:-16}"
PORT="${PORT:-4010}"
MOCK_PORT="${MOCK_PORT:-18090}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
die() { echo "dialects.sh: $*" >&2; exit 1; }
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

names=() venvs=() ports=()
for b in $BUILDS; do
  name=${b%%=*} venv=${b#*=}
  [[ $b == *=* && $name =~ ^[A-Za-z0-9._-]+$ ]] || die "BUILDS entry '$b' is not name=venv"
  [[ " ${names[*]} " != *" $name "* ]] || die "build name '$name' given twice"
  [ -x "$venv/bin/tollway" ] || die "$venv/bin/tollway not found (build '$name')"
  names+=("$name") venvs+=("$venv") ports+=($((PORT + ${#names[@]} - 1)))
done
for p in "$MOCK_PORT" "${ports[@]}"; do in_use "$p" && die "port $p is already in use (set PORT / MOCK_PORT)"; done
mkdir -p "$OUT/wrk"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

MOCK_QUIET=1 MOCK_PORT=$MOCK_PORT node "$KIT/mock_upstream.js" >"$OUT/mock.log" 2>&1 & pids+=($!)
export OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:$MOCK_PORT/v1 TOLLWAY_ADMIN_KEY=$ADMIN
cat >"$OUT/tollway.yaml" <<YAML
providers:
  - {name: chatonly, kind: openai_compatible, base_url: "http://127.0.0.1:$MOCK_PORT/v1",
     credentials: [{id: chatonly-1, api_key: sk-mock}]}
YAML
export TOLLWAY_CONFIG="$OUT/tollway.yaml"
export TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=${TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL:-100000}

serve() {  # build index: start its gateway, wait for /healthz, make a key
  local name=${names[$1]} port=${ports[$1]} pid
  mkdir -p "$OUT/$name.data"
  TOLLWAY_DATA_DIR="$OUT/$name.data" "${venvs[$1]}/bin/tollway" serve --port "$port" >"$OUT/$name.log" 2>&1 &
  pid=$!; pids+=($pid); echo $pid >"$OUT/$name.pid"
  for _ in $(seq 300); do
    curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || die "build '$name' exited at start; see $OUT/$name.log"
    sleep 0.2
  done
  curl -s "http://127.0.0.1:$port/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])' >"$OUT/$name.key" \
    || die "build '$name': no API key; see $OUT/$name.log"
}
for i in "${!names[@]}"; do serve "$i"; done

MSG='[{"role":"user","content":"Say hello in one short sentence."}]'
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"messages\":$MSG}" >"$OUT/openai-json.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"stream\":true,\"messages\":$MSG}" >"$OUT/openai-stream.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"messages\":$MSG}" >"$OUT/anthropic-json.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"stream\":true,\"messages\":$MSG}" >"$OUT/anthropic-stream.json"
IN='[{"role":"user","content":"Say hello in one short sentence."}]'
echo "{\"model\":\"gpt-4o-mini\",\"max_output_tokens\":64,\"input\":$IN}" >"$OUT/responses-json.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_output_tokens\":64,\"stream\":true,\"input\":$IN}" >"$OUT/responses-stream.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_output_tokens\":64,\"store\":false,\"input\":$IN}" \
  >"$OUT/responses-nostore-json.json"
echo "{\"model\":\"chatonly/gpt-4o-mini\",\"max_output_tokens\":64,\"input\":$IN}" >"$OUT/responses-tr-json.json"
echo "{\"model\":\"chatonly/gpt-4o-mini\",\"max_output_tokens\":64,\"stream\":true,\"input\":$IN}" \
  >"$OUT/responses-tr-stream.json"
read -r -a CASES <<<"${CASES:-openai-json anthropic-json openai-stream anthropic-stream}"
path() { case $1 in openai-*) echo /v1/chat/completions ;; anthropic-*) echo /v1/messages ;;
  responses-*) echo /v1/responses ;; esac; }
ends() { case $1 in *-json) echo '"usage"' ;; openai-stream) echo '[DONE]' ;; anthropic-stream) echo message_stop ;;
  responses-*stream) echo response.completed ;; esac; }
HEADERS="anthropic-version: 2023-06-01"   # sent on every case, as in the first runs (RESULTS.md)

# Every case must answer 200 with a complete body on every build before anything is measured.
for i in "${!names[@]}"; do
  for c in "${CASES[@]}"; do
    code=$(curl -sS -m 10 -o "$OUT/wrk/check-${names[$i]}-$c" -w '%{http_code}' "http://127.0.0.1:${ports[$i]}$(path $c)" \
      -H "Authorization: Bearer $(cat "$OUT/${names[$i]}.key")" -H "$HEADERS" -H 'Content-Type: application/json' \
      --data-binary "@$OUT/$c.json")
    [ "$code" = 200 ] && grep -qF "$(ends $c)" "$OUT/wrk/check-${names[$i]}-$c" \
      || die "build '${names[$i]}', $c: HTTP $code or incomplete body; see $OUT/wrk/check-${names[$i]}-$c"
  done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }  # utime + stime of one pid
load() {  # build-index case seconds meta-json-or-empty
  BENCH_BODY_FILE="$OUT/$2.json" BENCH_KEY="$(cat "$OUT/${names[$1]}.key")" BENCH_HEADERS="$HEADERS" \
    BENCH_OUT="$OUT/wrk/last.jsonl" BENCH_META="$4" \
    wrk -t2 -c"$CONC" -d"$3s" -s "$KIT/wrk_post.lua" "http://127.0.0.1:${ports[$1]}$(path "$2")"
}
measure() {  # build-index case round: one measurement, appended to results.jsonl and printed
  local name=${names[$1]} pid before after
  pid=$(cat "$OUT/$name.pid")
  rm -f "$OUT/wrk/last.jsonl"
  before=$(cpu_ticks "$pid") || die "build '$name' has exited; see $OUT/$name.log"
  load "$1" "$2" "$DURATION" "\"build\":\"$name\",\"case\":\"$2\",\"round\":$3" >"$OUT/wrk/$name-$2-r$3.txt" 2>&1
  after=$(cpu_ticks "$pid") || die "build '$name' has exited; see $OUT/$name.log"
  [ -s "$OUT/wrk/last.jsonl" ] || die "no wrk result for $name $2 round $3; see $OUT/wrk/$name-$2-r$3.txt"
  python3 - "$OUT/wrk/last.jsonl" "$((after - before))" "$(getconf CLK_TCK)" "$OUT/results.jsonl" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
d["cpu_ms_per_req"] = 1000 * int(sys.argv[2]) / int(sys.argv[3]) / max(d["requests"], 1)
d["errors"] = sum(d[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
open(sys.argv[4], "a").write(json.dumps(d) + "\n")
print(f"  {d['case']:<17} {d['build']:<10} {d['rps']:>7.0f} req/s  {d['cpu_ms_per_req']:6.3f} ms CPU/req  errors={d['errors']}")
EOF
}

if [ "$WARMUP" != 0 ]; then
  echo "warm-up: ${WARMUP}s of each case on each build (${names[*]})"
  for i in "${!names[@]}"; do for c in "${CASES[@]}"; do load "$i" "$c" "$WARMUP" "" >/dev/null 2>&1; done; done
fi
n=${#names[@]}
for r in $(seq "$ROUNDS"); do
  echo "round $r (c=$CONC, ${DURATION}s each)"
  for c in "${CASES[@]}"; do
    for k in $(seq 0 $((n - 1))); do measure $(((k + r - 1) % n)) "$c" "$r"; done
  done
done

echo
python3 - "$OUT/results.jsonl" "$CONC" "$DURATION" "${names[@]}" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from statistics import median
rows = [json.loads(l) for l in open(sys.argv[1])]
conc, duration, builds = sys.argv[2], sys.argv[3], sys.argv[4:]
first = builds[0]
label = {"openai-json": "OpenAI non-stream (pass-through)", "anthropic-json": "Anthropic non-stream (translated)",
         "openai-stream": "OpenAI stream (pass-through)", "anthropic-stream": "Anthropic stream (translated)",
         "responses-json": "Responses non-stream (pass-through)", "responses-stream": "Responses stream (pass-through)",
         "responses-nostore-json": "Responses non-stream, store false", "responses-tr-json":
         "Responses non-stream (translated)", "responses-tr-stream": "Responses stream (translated)"}
cases = [c for c in label if any(d["case"] == c for d in rows)]
def runs(b, c, key):  # per round, in round order
    return [d[key] for d in sorted((d for d in rows if d["build"] == b and d["case"] == c), key=lambda d: d["round"])]
def cpu(b, c): return runs(b, c, "cpu_ms_per_req")
def per_round(xs, f): return " / ".join(f.format(x) for x in xs)
compare = len(builds) > 1

print(f"req/s and gateway CPU ms per request: each round, then the median (wrk c={conc}, {duration}s each)")
head = f"{'case':<34} {'build':<10} {'req/s per round':<26} {'median':>7}   {'CPU ms/req per round':<26} {'median':>6}"
print(head + (f"  {'vs ' + first:>16}" if compare else "") + "  errors")
for c in cases:
    for i, b in enumerate(builds):
        rps, ms = runs(b, c, "rps"), cpu(b, c)
        line = (f"{label[c] if i == 0 else '':<34} {b:<10} {per_round(rps, '{:,.0f}'):<26} {median(rps):>7,.0f}   "
                f"{per_round(ms, '{:.3f}'):<26} {median(ms):>6.3f}")
        if compare:
            d = median(ms) - median(cpu(first, c))
            line += f"  {'' if b == first else f'{d:+.3f} ({100 * d / median(cpu(first, c)):+.1f}%)':>16}"
        print(line + f"  {sum(runs(b, c, 'errors'))}")

print("\ndifferences of gateway CPU ms/req, per build (per round / median of the per-round differences)")
for a, z in [("responses-json", "openai-json"), ("responses-stream", "openai-stream"),
             ("responses-json", "responses-nostore-json"), ("responses-tr-json", "responses-json"),
             ("responses-tr-stream", "responses-stream")]:
    if a in cases and z in cases:
        for b in builds:
            ds = [x - y for x, y in zip(cpu(b, a), cpu(b, z))]
            print(f"  {a} - {z:<24} {b:<10} {per_round(ds, '{:+.3f}'):<26} {median(ds):>+6.3f}")
if not all(c in cases for c in ("openai-json", "anthropic-json", "openai-stream", "anthropic-stream")):
    sys.exit(0)
print("\ntranslated minus pass-through, gateway CPU ms/req (per round / median of the per-round differences)")
print(f"{'build':<10} {'stream':<26} {'median':>6}   {'non-stream':<26} {'median':>6}")
med = {}
for b in builds:
    ds = [t - p for t, p in zip(cpu(b, "anthropic-stream"), cpu(b, "openai-stream"))]
    dn = [t - p for t, p in zip(cpu(b, "anthropic-json"), cpu(b, "openai-json"))]
    med[b] = (median(ds), median(dn))
    line = f"{b:<10} {per_round(ds, '{:+.3f}'):<26} {med[b][0]:>+6.3f}   {per_round(dn, '{:+.3f}'):<26} {med[b][1]:>+6.3f}"
    if compare and b != first:
        line += f"   vs {first}: stream {med[b][0] - med[first][0]:+.3f}, non-stream {med[b][1] - med[first][1]:+.3f}"
    print(line)
EOF
echo "raw: $OUT/results.jsonl (one line per measurement), wrk output in $OUT/wrk/"
