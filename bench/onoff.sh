#!/usr/bin/env bash
# What one setting costs per request: the same gateway with $SETTING off and on (on: its default,
# or EXTRA's variables too), non-stream at concurrency $CONC against the kit's mock, interleaved
# ROUNDS times, the order alternating each round; req/s and gateway CPU ms per request.
#
#   SETTING=TOLLWAY_METRICS bench/onoff.sh          # metrics (issue 18); ROUNDS=6 DURATION=10 CONC=64
#   SETTING=TOLLWAY_METRICS EXTRA="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" bench/onoff.sh   # + traces
#   SETTING=TOLLWAY_RECORD_CHATS bench/onoff.sh     # chat records (issue 15)
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
SETTING="${SETTING:?name the setting, e.g. SETTING=TOLLWAY_METRICS}"
OUT="${OUT:-/tmp/tollway-onoff-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-6}" DURATION="${DURATION:-10}" CONC="${CONC:-64}"
EXTRA="${EXTRA:-}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

. "$HERE/bench/lib.sh"  # start_mock, wait_ready; run NAME PORT
start_mock 18097

serve() {  # name port on|off
  local data extra=""; data=$(mktemp -d)
  [ "$3" = on ] && extra="$EXTRA"
  env TOLLWAY_DATA_DIR="$data" "$SETTING=$3" $extra "$VENV/bin/tollway" serve --port "$2" >"$OUT/$1.log" 2>&1 &
  pids+=($!); echo $! >"$OUT/$1.pid"; echo "$data" >"$OUT/$1.data"
  wait_ready "$2"
  curl -fsS "http://127.0.0.1:$2/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])' >"$OUT/$1.key"
}
serve off 4041 off
serve on 4042 on

for r in $(seq "$ROUNDS"); do
  echo "round $r (c=$CONC, ${DURATION}s each)"
  if [ $((r % 2)) = 0 ]; then run on 4042; run off 4041; else run off 4041; run on 4042; fi
done | tee "$OUT/summary.txt"
