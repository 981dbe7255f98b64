#!/usr/bin/env bash
# What billing and limits cost per request: the same gateway with billing off (TOLLWAY_BILLING=off,
# a key without limits) and on (a priced model, a key with a balance and RPM/TPM limits it never
# reaches, so every request is authorized, counted twice, held, settled and written to the ledger),
# non-stream at concurrency $CONC against the kit's mock, interleaved ROUNDS times. With REDIS set,
# two more gateways keep pool state (both), wallets and limits (billing on) in Redis.
#
#   bench/billing.sh                                       # ROUNDS=3 DURATION=10 CONC=64
#   REDIS=redis://127.0.0.1:6379/14 bench/billing.sh
#   ALL=1 bench/billing.sh     # everything on (billing, limits, chat records, metrics: the defaults)
#                              # against everything off (issue 19's "within 15 %")
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
OUT="${OUT:-/tmp/tollway-billing-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONC="${CONC:-64}"
REDIS="${REDIS:-}"
OFF_ENV=""
[ "${ALL:-0}" = 1 ] && OFF_ENV="TOLLWAY_RECORD_CHATS=off TOLLWAY_METRICS=off"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

. "$HERE/bench/lib.sh"  # start_mock, wait_ready, priced_key; run NAME PORT
start_mock 18096

admin() {  # port path json
  curl -fsS "http://127.0.0.1:$1$2" -H "Authorization: Bearer $ADMIN" -d "$3"
}
serve() {  # name port billing(on|off) [redis url]
  local data off_env=""; data=$(mktemp -d)
  [ "$3" = off ] && off_env=$OFF_ENV
  # shellcheck disable=SC2086  # off_env is a list of NAME=value words
  env $off_env TOLLWAY_DATA_DIR="$data" TOLLWAY_BILLING="$3" TOLLWAY_REDIS_URL="${4:-}" TOLLWAY_REDIS_PREFIX="bench$RANDOM:" \
    "$VENV/bin/tollway" serve --port "$2" >"$OUT/$1.log" 2>&1 &
  pids+=($!); echo $! >"$OUT/$1.pid"
  wait_ready "$2"
  if [ "$3" = on ]; then
    priced_key "$2" "$ADMIN"
  else
    admin "$2" /admin/api-key/apply '{"name":"bench"}' | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])'
  fi >"$OUT/$1.key"
}
serve off 4031 off
serve on 4032 on
if [ -n "$REDIS" ]; then serve off-redis 4034 off "$REDIS"; serve on-redis 4033 on "$REDIS"; fi

for r in $(seq "$ROUNDS"); do
  echo "round $r (c=$CONC, ${DURATION}s each)"
  run off 4031
  run on 4032
  if [ -n "$REDIS" ]; then run off-redis 4034; run on-redis 4033; fi
done | tee "$OUT/summary.txt"
# what the "on" gateway billed: ledger rows against requests logged
sleep 1
for name in on on-redis; do
  [ -f "$OUT/$name.key" ] || continue
  port=$([ $name = on ] && echo 4032 || echo 4033)
  curl -s "http://127.0.0.1:$port/user/usage?group_by=" -H "Authorization: Bearer $(cat "$OUT/$name.key")" \
    | python3 -c 'import sys, json; d = json.load(sys.stdin); print(sys.argv[1], "billed", d["totals"], "balance", d["key"]["balance"])' "$name"
done | tee -a "$OUT/summary.txt"
