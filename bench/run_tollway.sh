#!/usr/bin/env bash
# Adds Tollway to the shared benchmark kit: starts the kit's mock upstream, Tollway (one worker,
# key auth and request logging on, SQLite) and optionally LiteLLM with one worker, runs the
# kit's interleaved run.sh over all of them, then Tollway's cold starts with startup.py.
#
#   bench/run_tollway.sh                  # tollway vs litellm-1w (needs the kit's LiteLLM venv)
#   LITELLM=0 bench/run_tollway.sh        # tollway and the mock floor only
#   KIT=/path/to/shared/bench OUT=/tmp/out ROUNDS=3 DURATION=10 bench/run_tollway.sh
#
# Output goes to $OUT (default /tmp/tollway-bench-<time>), never into the repository.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
LITELLM_VENV="${LITELLM_VENV:-$HOME/.cache/tollway-bench/litellm}"
LITELLM="${LITELLM:-1}"
OUT="${OUT:-/tmp/tollway-bench-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
PORT="${PORT:-4000}"
ADMIN="bench-admin-key-$RANDOM$RANDOM"
mkdir -p "$OUT"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT

MOCK_QUIET=1 MOCK_PORT=18080 node "$KIT/mock_upstream.js" >"$OUT/mock.log" 2>&1 & MOCK_PID=$!; pids+=($MOCK_PID)
export OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:18080/v1 TOLLWAY_ADMIN_KEY=$ADMIN
# one mock credential serves the whole load: lift the per-credential cap (default 2) out of the way
export TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=${TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL:-100000}
DATA=$(mktemp -d)
TOLLWAY_DATA_DIR=$DATA "$VENV/bin/tollway" serve --port "$PORT" >"$OUT/tollway.log" 2>&1 & GW=$!; pids+=($GW)
targets=()
if [ "$LITELLM" = 1 ]; then
  ( export LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True; unset PYTHONDONTWRITEBYTECODE
    exec "$LITELLM_VENV/bin/litellm" --config "$KIT/litellm_config.yaml" --host 127.0.0.1 --port 14001 \
      --num_workers 1 ) >"$OUT/litellm-1w.log" 2>&1 & L1=$!; pids+=($L1)
  until curl -fsS -m 2 http://127.0.0.1:14001/health/liveliness >/dev/null 2>&1; do sleep 0.3; done
fi
until curl -fsS -m 2 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.2; done
KEY=$(curl -s "http://127.0.0.1:$PORT/admin/api-key/apply" -H "Authorization: Bearer $ADMIN" -d '{"name":"bench"}' \
      | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])')
targets+=("tollway,http://127.0.0.1:$PORT,$KEY,$GW")
baseline=()
if [ "$LITELLM" = 1 ]; then
  targets+=("litellm-1w,http://127.0.0.1:14001,sk-bench-master,$L1")
  baseline=(--baseline litellm-1w)
fi
(cd /tmp && "$KIT/run.sh" --rounds "$ROUNDS" --duration "$DURATION" --conc "16 64" --stream-conc 16 --ttft-conc 8 \
  --mock-pid "$MOCK_PID" "${baseline[@]}" --out "$OUT/run" "${targets[@]}") | tee "$OUT/run.out" | tail -n 60
python3 "$KIT/killtree.py" "$GW" >/dev/null 2>&1
[ "$LITELLM" = 1 ] && python3 "$KIT/killtree.py" "$L1" >/dev/null 2>&1
DATA2=$(mktemp -d)
(cd /tmp && TOLLWAY_DATA_DIR=$DATA2 python3 "$KIT/startup.py" --name tollway --url "http://127.0.0.1:$((PORT + 1))" \
  --health-path /healthz --key "$ADMIN" --repeat 3 --out "$OUT/startup.jsonl" \
  -- "$VENV/bin/tollway" serve --port "$((PORT + 1))") | tee "$OUT/startup.out" | tail -n 5
rm -rf "$DATA" "$DATA2"
echo "results: $OUT"
