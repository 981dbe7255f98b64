#!/usr/bin/env bash
# What metrics (and traces) cost per request (issue 18): the same gateway with metrics off
# (TOLLWAY_METRICS=off) and on (the default: every request counted; with OTLP set, also traced
# when EXTRA sets OTEL_EXPORTER_OTLP_ENDPOINT), non-stream at concurrency $CONC against the
# kit's mock, interleaved ROUNDS times; req/s and gateway CPU ms per request.
#
#   bench/metrics.sh                                       # ROUNDS=3 DURATION=10 CONC=64
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
OUT="${OUT:-/tmp/tollway-metrics-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONC="${CONC:-64}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
EXTRA="${EXTRA:-}"  # e.g. EXTRA="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" to trace the "on" gateway too
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

MOCK_QUIET=1 MOCK_PORT=18098 node "$KIT/mock_upstream.js" >"$OUT/mock.log" 2>&1 & pids+=($!)
export OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:18098/v1 TOLLWAY_ADMIN_KEY=$ADMIN
export TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=100000
echo '{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}' >"$OUT/body.json"

serve() {  # name port metrics(on|off)
  local data; data=$(mktemp -d)
  local extra=""; [ "$3" = on ] && extra="$EXTRA"
  env TOLLWAY_DATA_DIR=$data TOLLWAY_METRICS=$3 $extra "$VENV/bin/tollway" serve --port "$2" >"$OUT/$1.log" 2>&1 &
  pids+=($!); echo $! >"$OUT/$1.pid"
  until curl -fsS -m 2 "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; do sleep 0.2; done
  curl -fsS "http://127.0.0.1:$2/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])' >"$OUT/$1.key"
  echo "$data" >"$OUT/$1.data"
}
serve off 4051 off
serve on 4052 on

. "$HERE/bench/lib.sh"  # run NAME PORT
for r in $(seq "$ROUNDS"); do
  echo "round $r (c=$CONC, ${DURATION}s each)"
  if [ $((r % 2)) = 0 ]; then run on 4052; run off 4051; else run off 4051; run on 4052; fi  # alternate the order
done | tee "$OUT/summary.txt"
