#!/usr/bin/env bash
# What pool selection costs per request: the same gateway with its pool state in memory and in
# Redis (TOLLWAY_REDIS_URL), non-stream at concurrency $CONC against the kit's mock, interleaved
# ROUNDS times. The per-credential cap is lifted, so nothing queues: the difference is the cost of
# taking and giving back a slot (and the health read) per call.
#
#   REDIS=redis://127.0.0.1:6379/14 bench/pools.sh        # ROUNDS=3 DURATION=10 CONC=64
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
OUT="${OUT:-/tmp/tollway-pools-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONC="${CONC:-64}"
REDIS="${REDIS:-redis://127.0.0.1:6379/14}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

. "$HERE/bench/lib.sh"  # start_mock, wait_ready; run NAME PORT
start_mock 18095

serve() {  # name port [redis url]
  local data; data=$(mktemp -d)
  TOLLWAY_DATA_DIR=$data TOLLWAY_REDIS_URL="${3:-}" "$VENV/bin/tollway" serve --port "$2" >"$OUT/$1.log" 2>&1 &
  pids+=($!); echo $! >"$OUT/$1.pid"
  wait_ready "$2"
  curl -s "http://127.0.0.1:$2/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])' >"$OUT/$1.key"
}
serve memory 4021
serve redis 4022 "$REDIS"

for r in $(seq "$ROUNDS"); do
  echo "round $r (c=$CONC, ${DURATION}s each)"
  run memory 4021
  run redis 4022
done | tee "$OUT/summary.txt"
