#!/usr/bin/env bash
# What recording chats costs per request (issue 15): the same gateway with chat records off
# (TOLLWAY_RECORD_CHATS=off) and on (every request's messages and answer captured and written
# behind the response to chat_sessions / chat_threads), non-stream at concurrency $CONC against the
# kit's mock, interleaved ROUNDS times; req/s and gateway CPU ms per request.
#
#   bench/records.sh                                       # ROUNDS=3 DURATION=10 CONC=64
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
OUT="${OUT:-/tmp/tollway-records-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONC="${CONC:-64}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

MOCK_QUIET=1 MOCK_PORT=18097 node "$KIT/mock_upstream.js" >"$OUT/mock.log" 2>&1 & pids+=($!)
export OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:18097/v1 TOLLWAY_ADMIN_KEY=$ADMIN
export TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=100000
echo '{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}' >"$OUT/body.json"

serve() {  # name port records(on|off)
  local data; data=$(mktemp -d)
  TOLLWAY_DATA_DIR=$data TOLLWAY_RECORD_CHATS=$3 "$VENV/bin/tollway" serve --port "$2" >"$OUT/$1.log" 2>&1 &
  pids+=($!); echo $! >"$OUT/$1.pid"
  until curl -fsS -m 2 "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; do sleep 0.2; done
  curl -fsS "http://127.0.0.1:$2/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])' >"$OUT/$1.key"
  echo "$data" >"$OUT/$1.data"
}
serve off 4041 off
serve on 4042 on

. "$HERE/bench/lib.sh"  # run NAME PORT
for r in $(seq "$ROUNDS"); do
  echo "round $r (c=$CONC, ${DURATION}s each)"
  run off 4041
  run on 4042
done | tee "$OUT/summary.txt"
sleep 2
# what the "on" gateway recorded, against what it logged
python3 - "$(cat "$OUT/on.data")/tollway.db" <<'PY' | tee -a "$OUT/summary.txt"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
threads = db.execute("select count(*) from chat_threads").fetchone()[0]
logged = db.execute("select count(*) from request_logs where path = '/v1/chat/completions'").fetchone()[0]
print(f"on: {threads} threads recorded for {logged} requests logged")
PY
