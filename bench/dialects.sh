#!/usr/bin/env bash
# What translation costs: the same upstream (the shared kit's OpenAI-compatible mock) called by an
# OpenAI client (byte pass-through) and by an Anthropic client (/v1/messages, translated both ways),
# non-stream and stream, one Tollway worker, key auth and request logging on, SQLite.
# Prints req/s (wrk) and gateway CPU ms per request (from /proc) for each, interleaved ROUNDS times.
#
#   bench/dialects.sh                      # ROUNDS=3 DURATION=10 CONC=16
#
# Output goes to $OUT (default /tmp/tollway-dialects-<time>), never into the repository.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
OUT="${OUT:-/tmp/tollway-dialects-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONC="${CONC:-16}"
PORT="${PORT:-4010}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

MOCK_QUIET=1 MOCK_PORT=18090 node "$KIT/mock_upstream.js" >"$OUT/mock.log" 2>&1 & pids+=($!)
export OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:18090/v1 TOLLWAY_ADMIN_KEY=$ADMIN
export TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=${TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL:-100000}
TOLLWAY_DATA_DIR=$(mktemp -d) "$VENV/bin/tollway" serve --port "$PORT" >"$OUT/tollway.log" 2>&1 & GW=$!; pids+=($GW)
until curl -fsS -m 2 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.2; done
KEY=$(curl -s "http://127.0.0.1:$PORT/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
      | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])')

MSG='[{"role":"user","content":"Say hello in one short sentence."}]'
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"messages\":$MSG}" >"$OUT/openai.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"stream\":true,\"messages\":$MSG}" >"$OUT/openai-stream.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"messages\":$MSG}" >"$OUT/anthropic.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"stream\":true,\"messages\":$MSG}" >"$OUT/anthropic-stream.json"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$GW/stat"; }
run() {  # name path body-file
  local before after
  before=$(cpu_ticks)
  BENCH_BODY_FILE="$OUT/$3" BENCH_KEY="$KEY" BENCH_HEADERS="anthropic-version: 2023-06-01" \
    BENCH_OUT="$OUT/$1.jsonl" BENCH_META="\"case\":\"$1\"" \
    wrk -t2 -c"$CONC" -d"${DURATION}s" -s "$KIT/wrk_post.lua" "http://127.0.0.1:$PORT$2" >"$OUT/$1.wrk" 2>&1
  after=$(cpu_ticks)
  python3 - "$OUT/$1.jsonl" "$before" "$after" "$(getconf CLK_TCK)" "$1" <<'EOF'
import json, sys
line = json.loads(open(sys.argv[1]).read().splitlines()[-1])
reqs = line.get("requests") or line.get("reqs") or 0
secs = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
rps = line.get("rps") or line.get("requests_per_sec") or 0
errs = line.get("errors") or line.get("non2xx") or 0
print(f"{sys.argv[5]:<18} {rps:>9.0f} req/s  {1000 * secs / max(reqs, 1):6.2f} ms CPU/req  errors={errs}")
EOF
}
for r in $(seq "$ROUNDS"); do
  echo "round $r (c=$CONC, ${DURATION}s each)"
  run openai-json /v1/chat/completions openai.json
  run anthropic-json /v1/messages anthropic.json
  run openai-stream /v1/chat/completions openai-stream.json
  run anthropic-stream /v1/messages anthropic-stream.json
done | tee "$OUT/summary.txt"
