# Shared by the bench scripts: `start_mock PORT` (the kit's mock, the upstream environment and
# $OUT/body.json), `wait_ready PORT`, `priced_key PORT ADMIN`, `tree_cpu PID`, and `run NAME PORT`: wrk at
# $CONC for $DURATION seconds against the gateway whose pid and key are in $OUT/NAME.pid and
# $OUT/NAME.key, printing req/s, the gateway's CPU per request (from /proc, the process and its
# descendants), p50, p99 and errors. Needs KIT, OUT, CONC, DURATION (and pids, ADMIN for start_mock).
start_mock() {  # port: the kit's mock there (its pid added to $pids), the gateways' upstream and admin
  # key in the environment, no per-credential cap, and the chat body every run posts in $OUT/body.json
  MOCK_QUIET=1 MOCK_PORT=$1 node "$KIT/mock_upstream.js" >"$OUT/mock.log" 2>&1 & pids+=($!)
  export OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:$1/v1 TOLLWAY_ADMIN_KEY=$ADMIN
  export TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=100000
  echo '{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}' >"$OUT/body.json"
}
wait_ready() {  # port: until the gateway there answers /healthz
  until curl -fsS -m 2 "http://127.0.0.1:$1/healthz" >/dev/null 2>&1; do sleep 0.2; done
}
priced_key() {  # port admin-key: prices gpt-4o-mini, prints the secret of a new key with a balance and
  # RPM/TPM limits it never reaches (every request is authorized, counted, held, settled and billed)
  curl -fsS "http://127.0.0.1:$1/admin/model/save" -H "Authorization: Bearer $2" \
    -d '{"name":"gpt-4o-mini","provider":"openai","price_in":0.15,"price_out":0.6}' >/dev/null
  curl -fsS "http://127.0.0.1:$1/admin/api-key/apply" -H "Authorization: Bearer $2" \
    -d '{"name":"bench","balance":1000000,"rpm":100000000,"tpm":1000000000}' \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])'
}
tree_cpu() {  # pid: CPU ticks (utime + stime + cutime + cstime) of the process and every descendant
  KIT="$KIT" python3 - "$1" <<'PY'
import os, sys
sys.path.insert(0, os.environ["KIT"])
from procmon import tree  # the kit's process-tree walk
total = 0
for pid in tree(int(sys.argv[1])):
    try:
        data = open(f"/proc/{pid}/stat", "rb").read()
    except OSError:
        continue
    total += sum(int(x) for x in data[data.rfind(b")") + 2:].split()[11:15])
print(total)
PY
}
run() {  # name port
  local pid before after
  pid=$(cat "$OUT/$1.pid")
  before=$(tree_cpu "$pid")
  BENCH_BODY_FILE="$OUT/body.json" BENCH_KEY="$(cat "$OUT/$1.key")" BENCH_OUT="$OUT/$1.jsonl" \
    wrk -t2 -c"$CONC" -d"${DURATION}s" -s "$KIT/wrk_post.lua" "http://127.0.0.1:$2/v1/chat/completions" \
    >"$OUT/$1.wrk" 2>&1
  after=$(tree_cpu "$pid")
  python3 - "$OUT/$1.jsonl" "$before" "$after" "$(getconf CLK_TCK)" "$1" <<'PY'
import json, sys
line = json.loads(open(sys.argv[1]).read().splitlines()[-1])
secs = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
errs = sum(line[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
print(f"{sys.argv[5]:<8} {line['rps']:>8.0f} req/s  {1000 * secs / max(line['requests'], 1):5.2f} ms CPU/req  "
      f"p50 {line['lat_p50_ms']:.1f} ms  p99 {line['lat_p99_ms']:.1f} ms  errors={errs}")
PY
}
