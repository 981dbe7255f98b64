#!/usr/bin/env bash
# Embeddings against LiteLLM's (issue 14): the same POST /v1/embeddings requests (one short input,
# text-embedding-3-small, encoding_format float and base64 — base64 is what the OpenAI SDK sends by
# default) to one Tollway worker (SQLite, key auth and request logging on; its built-in
# text-embedding-3-small passed through to the mock) and one LiteLLM worker (the kit's settings and
# master key, no database, an embeddings model added), and to the mock alone (the floor);
# interleaved ROUNDS times; req/s (wrk) and CPU ms per request (/proc) of the gateway's processes.
#
#   bench/embeddings_litellm.sh       # ROUNDS=3 DURATION=10 CONC=16; needs the kit's LiteLLM venv
#
# The upstream is bench/mock_embeddings.js (1536 dimensions by default, like text-embedding-3-small;
# the kit's mock answers 8 unless asked). Output goes to $OUT (default
# /tmp/tollway-embeddings-litellm-<time>), never into the repository.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
LITELLM_VENV="${LITELLM_VENV:-$HOME/.cache/tollway-bench/litellm}"
OUT="${OUT:-/tmp/tollway-embeddings-litellm-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-10}" CONC="${CONC:-16}"
TW_PORT="${TW_PORT:-4012}" LL_PORT="${LL_PORT:-14012}" MOCK_PORT="${MOCK_PORT:-18081}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
die() { echo "embeddings_litellm.sh: $*" >&2; exit 1; }
[ -x "$LITELLM_VENV/bin/litellm" ] || die "no LiteLLM at $LITELLM_VENV (see the kit's README)"
command -v wrk >/dev/null || die "no wrk (apt-get install -y wrk)"
for p in $TW_PORT $LL_PORT $MOCK_PORT; do
  curl -s -m 1 -o /dev/null "http://127.0.0.1:$p/" && die "something already listens on port $p"
done
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

# LiteLLM's config: the kit's settings and master key, one embeddings model at this mock
"$LITELLM_VENV/bin/python" - "$KIT/litellm_config.yaml" "$OUT/litellm_config.yaml" "$MOCK_PORT" <<'EOF' || die "no LiteLLM config"
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg["model_list"] = [{"model_name": "text-embedding-3-small", "litellm_params": {
    "model": "openai/text-embedding-3-small", "api_base": f"http://127.0.0.1:{sys.argv[3]}/v1", "api_key": "sk-mock"}}]
yaml.safe_dump(cfg, open(sys.argv[2], "w"), sort_keys=False)
EOF

MOCK_QUIET=1 MOCK_PORT=$MOCK_PORT node "$HERE/bench/mock_embeddings.js" >"$OUT/mock.log" 2>&1 & MOCK_PID=$!; pids+=($MOCK_PID)
OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:$MOCK_PORT/v1 TOLLWAY_ADMIN_KEY=$ADMIN \
  TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=100000 TOLLWAY_DATA_DIR="$OUT/tollway.data" \
  "$VENV/bin/tollway" serve --port $TW_PORT >"$OUT/tollway.log" 2>&1 & TW_PID=$!; pids+=($TW_PID)
LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True "$LITELLM_VENV/bin/litellm" --config "$OUT/litellm_config.yaml" \
  --host 127.0.0.1 --port $LL_PORT --num_workers 1 >"$OUT/litellm.log" 2>&1 & LL_PID=$!; pids+=($LL_PID)
for url in "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$TW_PORT/healthz" "http://127.0.0.1:$LL_PORT/health/liveliness"; do
  for _ in $(seq 300); do curl -fsS -m 2 "$url" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS -m 2 "$url" >/dev/null 2>&1 || die "$url does not answer; see $OUT"
done
TW_KEY=$(curl -s "http://127.0.0.1:$TW_PORT/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
  | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])') || die "no Tollway key"
LL_KEY=$(grep -o 'master_key: *[^ ]*' "$KIT/litellm_config.yaml" | awk '{print $2}' | tr -d '"')
IN='"The quick brown fox jumps over the lazy dog."'
echo "{\"model\":\"text-embedding-3-small\",\"input\":$IN}" >"$OUT/float.json"
echo "{\"model\":\"text-embedding-3-small\",\"input\":$IN,\"encoding_format\":\"base64\"}" >"$OUT/base64.json"
port_of() { case $1 in tollway) echo $TW_PORT;; litellm) echo $LL_PORT;; mock) echo $MOCK_PORT;; esac; }
key_of() { case $1 in tollway) echo "$TW_KEY";; litellm) echo "$LL_KEY";; mock) echo "";; esac; }
pid_of() { case $1 in tollway) echo $TW_PID;; litellm) echo $LL_PID;; mock) echo $MOCK_PID;; esac; }
# every target answers both cases: 200, one embedding of 1536 floats, or base64 of 1536 float32
for g in mock tollway litellm; do for c in float base64; do
  code=$(curl -sS -m 20 -o "$OUT/check-$g-$c" -w '%{http_code}' "http://127.0.0.1:$(port_of $g)/v1/embeddings" \
    -H "Authorization: Bearer $(key_of $g)" -H 'Content-Type: application/json' --data-binary "@$OUT/$c.json")
  [ "$code" = 200 ] || die "$g $c: HTTP $code; see $OUT/check-$g-$c"
  python3 - "$OUT/check-$g-$c" "$c" "$g" <<'EOF' || die "$g $c: unexpected answer; see $OUT/check-$g-$c"
import base64, json, os, sys
d = json.load(open(sys.argv[1]))
e = d["data"][0]["embedding"]
n = len(base64.b64decode(e)) // 4 if isinstance(e, str) else len(e)
kind = "base64" if isinstance(e, str) else "float"
print(f"  check {sys.argv[3]:<8} {sys.argv[2]:<7} -> {kind} x {n}, usage {d.get('usage')}, "
      f"{os.path.getsize(sys.argv[1])} bytes")
assert n == 1536 and kind == sys.argv[2], (kind, n)
EOF
done; done
cpu() { local t=0; for p in $(pgrep -P "$1") "$1"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
for r in $(seq "$ROUNDS"); do for c in float base64; do for g in mock tollway litellm; do
  pid=$(pid_of $g); port=$(port_of $g); key=$(key_of $g)
  before=$(cpu $pid); mbefore=$(cpu $MOCK_PID); rm -f "$OUT/last.jsonl"
  BENCH_BODY_FILE="$OUT/$c.json" BENCH_KEY="$key" BENCH_OUT="$OUT/last.jsonl" \
    BENCH_META="\"gateway\":\"$g\",\"case\":\"$c\",\"round\":$r" \
    wrk -t2 -c"$CONC" -d"${DURATION}s" -s "$KIT/wrk_post.lua" "http://127.0.0.1:$port/v1/embeddings" >"$OUT/wrk-$g-$c-$r.txt" 2>&1
  after=$(cpu $pid); mafter=$(cpu $MOCK_PID)
  python3 - "$OUT/last.jsonl" "$((after - before))" "$(getconf CLK_TCK)" "$OUT/results.jsonl" "$((mafter - mbefore))" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
hz, n = int(sys.argv[3]), max(d["requests"], 1)
d["cpu_ms_per_req"] = 1000 * int(sys.argv[2]) / hz / n
d["mock_cpu_ms_per_req"] = 1000 * int(sys.argv[5]) / hz / n
d["bytes_per_resp"] = d["bytes"] / n
d["errors"] = sum(d[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
open(sys.argv[4], "a").write(json.dumps(d) + "\n")
print(f"  round {d['round']} {d['case']:<7} {d['gateway']:<8} {d['rps']:>8.1f} req/s  {d['cpu_ms_per_req']:7.3f} ms CPU/req  "
      f"p50 {d['lat_p50_ms']:.1f} p99 {d['lat_p99_ms']:.1f} ms  {d['bytes_per_resp']:.0f} B/resp  errors={d['errors']}")
EOF
done; done; done
python3 - "$OUT/results.jsonl" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from statistics import median
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'case':<7} {'target':<8} {'req/s per round':>26} {'median':>8} {'CPU ms/req per round':>24} {'median':>7} "
      f"{'p50 ms':>7} {'B/resp':>7} {'errors':>6}")
med = {}
for c in ("float", "base64"):
    for g in ("mock", "tollway", "litellm"):
        rs = sorted((d for d in rows if d["case"] == c and d["gateway"] == g), key=lambda d: d["round"])
        med[c, g] = (median(d["rps"] for d in rs), median(d["cpu_ms_per_req"] for d in rs))
        print(f"{c:<7} {g:<8} {' / '.join(format(d['rps'], ',.0f') for d in rs):>26} {med[c, g][0]:>8,.0f} "
              f"{' / '.join(format(d['cpu_ms_per_req'], '.3f') for d in rs):>24} {med[c, g][1]:>7.3f} "
              f"{median(d['lat_p50_ms'] for d in rs):>7.1f} {median(d['bytes_per_resp'] for d in rs):>7.0f} "
              f"{sum(d['errors'] for d in rs):>6}")
for c in ("float", "base64"):
    (tr, tc), (lr, lc) = med[c, "tollway"], med[c, "litellm"]
    print(f"{c}: tollway / litellm req/s {tr / lr:.1f}x; litellm / tollway CPU ms/req {lc / tc:.1f}x")
EOF
echo "raw: $OUT/results.jsonl"
