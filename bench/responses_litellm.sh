#!/usr/bin/env bash
# The Responses API against LiteLLM's: the same /v1/responses requests (non-stream and a 20-event
# stream, the shared kit's mock behind both, its Responses endpoint) to one Tollway worker (SQLite,
# key auth and request logging on, responses stored) and one LiteLLM worker (the kit's config: no
# database), interleaved ROUNDS times; req/s (wrk) and gateway CPU ms per request (/proc).
#
#   bench/responses_litellm.sh       # ROUNDS=3 DURATION=10 CONC=16; needs the kit's LiteLLM venv
#
# Output goes to $OUT (default /tmp/tollway-responses-litellm-<time>), never into the repository.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
LITELLM_VENV="${LITELLM_VENV:-$HOME/.cache/tollway-bench/litellm}"
OUT="${OUT:-/tmp/tollway-responses-litellm-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-10}" CONC="${CONC:-16}"
TW_PORT=4011 LL_PORT=14011 MOCK_PORT=18080  # the kit's LiteLLM config names the mock's port
ADMIN="bench-admin-key-$RANDOM$RANDOM"
die() { echo "responses_litellm.sh: $*" >&2; exit 1; }
[ -x "$LITELLM_VENV/bin/litellm" ] || die "no LiteLLM at $LITELLM_VENV (see the kit's README)"
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

MOCK_QUIET=1 MOCK_PORT=$MOCK_PORT node "$KIT/mock_upstream.js" >"$OUT/mock.log" 2>&1 & pids+=($!)
OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:$MOCK_PORT/v1 TOLLWAY_ADMIN_KEY=$ADMIN \
  TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=100000 TOLLWAY_DATA_DIR="$OUT/tollway.data" \
  "$VENV/bin/tollway" serve --port $TW_PORT >"$OUT/tollway.log" 2>&1 & TW_PID=$!; pids+=($TW_PID)
LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True "$LITELLM_VENV/bin/litellm" --config "$KIT/litellm_config.yaml" \
  --host 127.0.0.1 --port $LL_PORT --num_workers 1 >"$OUT/litellm.log" 2>&1 & LL_PID=$!; pids+=($LL_PID)
for url in "http://127.0.0.1:$TW_PORT/healthz" "http://127.0.0.1:$LL_PORT/health/liveliness"; do
  for _ in $(seq 300); do curl -fsS -m 2 "$url" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS -m 2 "$url" >/dev/null 2>&1 || die "$url does not answer; see $OUT"
done
TW_KEY=$(curl -s "http://127.0.0.1:$TW_PORT/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
  | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])') || die "no Tollway key"
LL_KEY=$(grep -o 'master_key: *[^ ]*' "$KIT/litellm_config.yaml" | awk '{print $2}' | tr -d '"')
# the LiteLLM worker is the process listening on its port (litellm forks uvicorn)
IN='[{"role":"user","content":"Say hello in one short sentence."}]'
echo "{\"model\":\"gpt-4o-mini\",\"max_output_tokens\":64,\"input\":$IN}" >"$OUT/json.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_output_tokens\":64,\"stream\":true,\"input\":$IN}" >"$OUT/stream.json"
for g in tollway litellm; do for c in json stream; do
  port=$([ $g = tollway ] && echo $TW_PORT || echo $LL_PORT); key=$([ $g = tollway ] && echo "$TW_KEY" || echo "$LL_KEY")
  code=$(curl -sS -m 20 -o "$OUT/check-$g-$c" -w '%{http_code}' "http://127.0.0.1:$port/v1/responses" \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' --data-binary "@$OUT/$c.json")
  [ "$code" = 200 ] || die "$g $c: HTTP $code; see $OUT/check-$g-$c"
done; done
cpu() { local t=0; for p in $(pgrep -P "$1") "$1"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
for r in $(seq "$ROUNDS"); do for c in json stream; do for g in tollway litellm; do
  pid=$([ $g = tollway ] && echo $TW_PID || echo $LL_PID); port=$([ $g = tollway ] && echo $TW_PORT || echo $LL_PORT)
  key=$([ $g = tollway ] && echo "$TW_KEY" || echo "$LL_KEY")
  before=$(cpu $pid); rm -f "$OUT/last.jsonl"
  BENCH_BODY_FILE="$OUT/$c.json" BENCH_KEY="$key" BENCH_OUT="$OUT/last.jsonl" \
    BENCH_META="\"gateway\":\"$g\",\"case\":\"$c\",\"round\":$r" \
    wrk -t2 -c"$CONC" -d"${DURATION}s" -s "$KIT/wrk_post.lua" "http://127.0.0.1:$port/v1/responses" >"$OUT/wrk-$g-$c-$r.txt" 2>&1
  after=$(cpu $pid)
  python3 - "$OUT/last.jsonl" "$((after - before))" "$(getconf CLK_TCK)" "$OUT/results.jsonl" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
d["cpu_ms_per_req"] = 1000 * int(sys.argv[2]) / int(sys.argv[3]) / max(d["requests"], 1)
d["errors"] = sum(d[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
open(sys.argv[4], "a").write(json.dumps(d) + "\n")
print(f"  round {d['round']} {d['case']:<7} {d['gateway']:<8} {d['rps']:>8.1f} req/s  {d['cpu_ms_per_req']:7.3f} ms CPU/req  "
      f"errors={d['errors']}")
EOF
done; done; done
python3 - "$OUT/results.jsonl" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from statistics import median
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'case':<8} {'gateway':<8} {'req/s (median)':>15} {'CPU ms/req (median)':>20} {'errors':>7}")
for c in ("json", "stream"):
    for g in ("tollway", "litellm"):
        rs = [d for d in rows if d["case"] == c and d["gateway"] == g]
        print(f"{c:<8} {g:<8} {median(d['rps'] for d in rs):>15,.1f} {median(d['cpu_ms_per_req'] for d in rs):>20.3f} "
              f"{sum(d['errors'] for d in rs):>7}")
EOF
echo "raw: $OUT/results.jsonl"
