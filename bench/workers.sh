#!/usr/bin/env bash
# Does a second worker add throughput? `serve --workers 1` against `--workers 2`, both sharing
# pools, wallets and limits through Redis (billing on: a priced model, a key with a balance and
# RPM/TPM limits it never reaches), non-stream at concurrency $CONC against the kit's mock,
# interleaved ROUNDS times; req/s and CPU ms per request of each gateway's process tree.
#
#   bench/workers.sh                      # REDIS=redis://127.0.0.1:6379/14 ROUNDS=3 DURATION=10 CONC=32
#   PG=postgresql://127.0.0.1:5432 bench/workers.sh   # each gateway on a fresh PostgreSQL database, not SQLite
#
# On SQLite two workers' write-behinds contend for the one database file's write lock.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
OUT="${OUT:-/tmp/tollway-workers-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-10}" CONC="${CONC:-32}"
REDIS="${REDIS:-redis://127.0.0.1:6379/14}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
PG="${PG:-}"
mkdir -p "$OUT"
pids=()
dbs=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1
  for db in "${dbs[@]}"; do psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; done
}
trap cleanup EXIT

. "$HERE/bench/lib.sh"  # start_mock, wait_ready, priced_key; run NAME PORT (CPU of the process tree: uvicorn's supervisor and its workers)
start_mock 18095

serve() {  # name port workers
  local data db=""; data=$(mktemp -d)
  if [ -n "$PG" ]; then
    db="bench_$1_$RANDOM"
    psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
    dbs+=("$db")
    db="${PG/postgresql:/postgresql+asyncpg:}/$db"
  fi
  TOLLWAY_DATABASE_URL="$db" TOLLWAY_DATA_DIR=$data TOLLWAY_REDIS_URL="$REDIS" TOLLWAY_REDIS_PREFIX="benchw$RANDOM:" \
    "$VENV/bin/tollway" serve --port "$2" --workers "$3" >"$OUT/$1.log" 2>&1 &
  pids+=($!); echo $! >"$OUT/$1.pid"
  wait_ready "$2"
  priced_key "$2" "$ADMIN" >"$OUT/$1.key"
}
serve w1 4051 1
serve w2 4052 2
sleep 1

for r in $(seq "$ROUNDS"); do
  echo "round $r (c=$CONC, ${DURATION}s each)"
  if [ $((r % 2)) = 0 ]; then run w2 4052; run w1 4051; else run w1 4051; run w2 4052; fi
done | tee "$OUT/summary.txt"
