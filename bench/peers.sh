#!/usr/bin/env bash
# Tollway beside its peers, LiteLLM and the Portkey gateway, on the shared kit's mock upstream:
# one Tollway worker (SQLite, key auth, request log and billing on: a priced model and a key with a
# balance and limits it never reaches), one LiteLLM worker (the kit's config, no database) and one
# Portkey process (@portkey-ai/gateway, headless, provider openai with a custom host), all started
# here and measured in the same interleaved rounds (target order rotated every round):
#   ns      non-stream chat completions, wrk -t2 -c$CONC
#   stream  $CHUNKS-chunk streams (the mock's chunk count), wrk -t2 -c$CONC, latency = whole stream
#   c1      non-stream latency at one connection (wrk -t1 -c1: wrk needs threads <= connections)
# each with the mock alone as the floor; the gateway process tree's CPU ms per request (utime +
# stime from /proc, every descendant and the reaped children's times); idle RSS/PSS of each gateway
# tree after start and after the runs (/proc/<pid>/smaps_rollup); and in every round the start-up
# time of each gateway to its first 200 on a health GET (Tollway on an existing data dir and on a
# fresh one), launch to 200 polled in a tight loop. Before measuring, every target must answer 200
# with the mock's own content (non-stream) and all $CHUNKS chunks and [DONE] (stream).
#
#   bench/peers.sh                       # ROUNDS=3 DURATION=10 WARMUP=3 CONC=16 CHUNKS=20 STARTUP=1
#
# The repo's venv is an editable install: it runs the work tree, uncommitted changes included
# (versions.txt says so). To measure a commit instead:
#   mkdir /tmp/tw-REV && git archive REV src | tar -x -C /tmp/tw-REV && PYTHONPATH=/tmp/tw-REV/src bench/peers.sh
#
# Needs the kit's LiteLLM venv ($LITELLM_VENV, see the kit's README) and Node; Portkey is installed
# here from bench/portkey/package.json into $PORTKEY_DIR (default ~/.cache/tollway-bench/portkey) when
# it is missing or that file changed. Portkey binds every interface and has no host flag: it runs
# with bench/portkey/bind_localhost.js preloaded, which forces its listen onto 127.0.0.1.
# Output goes to $OUT (default /tmp/tollway-peers-<time>), never into the repository.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${KIT:-$HERE/../shared/bench}"
VENV="${VENV:-$HERE/.venv}"
LITELLM_VENV="${LITELLM_VENV:-$HOME/.cache/tollway-bench/litellm}"
PORTKEY_DIR="${PORTKEY_DIR:-$HOME/.cache/tollway-bench/portkey}"
OUT="${OUT:-/tmp/tollway-peers-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-10}" WARMUP="${WARMUP:-3}" CONC="${CONC:-16}" CHUNKS="${CHUNKS:-20}"
STARTUP="${STARTUP:-1}"  # 0: no start-up times
MOCK_PORT="${MOCK_PORT:-18085}" TW_PORT="${TW_PORT:-4060}" LL_PORT="${LL_PORT:-14060}" PK_PORT="${PK_PORT:-8760}"
SU_TW_PORT=$((TW_PORT + 1)) SU_LL_PORT=$((LL_PORT + 1)) SU_PK_PORT=$((PK_PORT + 1))  # start-up runs
ADMIN="bench-admin-key-$RANDOM$RANDOM"
die() { echo "peers.sh: $*" >&2; exit 1; }
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ -x "$VENV/bin/tollway" ] || die "$VENV/bin/tollway not found"
[ -x "$LITELLM_VENV/bin/litellm" ] || die "no LiteLLM at $LITELLM_VENV (see the kit's README)"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
PK_MAIN="$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js"
if [ ! -f "$PK_MAIN" ] || ! cmp -s "$HERE/bench/portkey/package.json" "$PORTKEY_DIR/package.json"; then
  echo "installing Portkey into $PORTKEY_DIR (bench/portkey/package.json)"
  mkdir -p "$PORTKEY_DIR" && cp "$HERE/bench/portkey/package.json" "$PORTKEY_DIR/" \
    && (cd "$PORTKEY_DIR" && npm install --no-audit --no-fund --loglevel=error) || die "npm install failed in $PORTKEY_DIR"
fi
[ -f "$PK_MAIN" ] || die "no $PK_MAIN"
for p in $MOCK_PORT $TW_PORT $LL_PORT $PK_PORT $SU_TW_PORT $SU_LL_PORT $SU_PK_PORT; do
  in_use "$p" && die "port $p is already in use (set MOCK_PORT / TW_PORT / LL_PORT / PK_PORT)"
done
mkdir -p "$OUT/wrk" "$OUT/check"
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && python3 "$KIT/killtree.py" "${pids[@]}" >/dev/null 2>&1; }
trap cleanup EXIT
TW_SRC=$(cd /tmp && "$VENV/bin/python" -c 'import os, tollway; print(os.path.dirname(os.path.dirname(tollway.__file__)))')
TW_DIRTY=""  # the code measured: an editable install runs the work tree, uncommitted changes included
[ "$TW_SRC" = "$HERE/src" ] && [ -n "$(git -C "$HERE" --no-optional-locks status --porcelain -- src 2>/dev/null)" ] \
  && TW_DIRTY=" + uncommitted changes in src/"
{ echo "date $(date -Is)"; echo "tollway $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null)$TW_DIRTY (imported from $TW_SRC)"
  echo "litellm $("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version/ {print $2}')"
  echo "portkey $(node -p 'require(process.argv[1]).version' "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/package.json")" \
       "hono-node-server $(node -p 'require(process.argv[1]).version' "$PORTKEY_DIR/node_modules/@hono/node-server/package.json")"
  echo "node $(node --version) wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}') cores $(nproc)"
  echo "ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONC=$CONC CHUNKS=$CHUNKS"; } >"$OUT/versions.txt"

# --- the commands of the three gateways (also used for the start-up runs) ---------------------------
export OPENAI_API_KEY=sk-mock OPENAI_BASE_URL=http://127.0.0.1:$MOCK_PORT/v1 TOLLWAY_ADMIN_KEY=$ADMIN
# one mock credential serves the whole load: lift the per-credential cap out of the way
export TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL=${TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL:-100000}
sed "s#127\.0\.0\.1:18080#127.0.0.1:$MOCK_PORT#g" "$KIT/litellm_config.yaml" >"$OUT/litellm_config.yaml"
LL_KEY=$(grep -o 'master_key: *[^ ]*' "$OUT/litellm_config.yaml" | awk '{print $2}' | tr -d '"')
cmd_of() {  # gateway port: the command line in CMD (Tollway's data dir: TOLLWAY_DATA_DIR)
  case $1 in
    tollway) CMD=("$VENV/bin/tollway" serve --port "$2") ;;
    litellm) CMD=(env -u PYTHONDONTWRITEBYTECODE LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True
                  "$LITELLM_VENV/bin/litellm" --config "$OUT/litellm_config.yaml" --host 127.0.0.1 --port "$2" --num_workers 1) ;;
    portkey) CMD=(node --require "$HERE/bench/portkey/bind_localhost.js" "$PK_MAIN" "--port=$2" --headless) ;;
  esac
}

# --- start everything, one after the other -----------------------------------------------------------
wait_up() {  # name pid url
  for _ in $(seq 600); do
    curl -fsS -m 2 -o /dev/null "$3" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$1 exited at start; see $OUT/$1.log"
    sleep 0.2
  done
  die "$1 does not answer on $3; see $OUT/$1.log"
}
MOCK_QUIET=1 MOCK_PORT=$MOCK_PORT MOCK_CHUNKS=$CHUNKS node "$KIT/mock_upstream.js" >"$OUT/mock.log" 2>&1 &
MOCK_PID=$!; pids+=("$MOCK_PID"); wait_up mock $MOCK_PID "http://127.0.0.1:$MOCK_PORT/health"
mkdir -p "$OUT/tollway.data"
cmd_of tollway "$TW_PORT"; TOLLWAY_DATA_DIR="$OUT/tollway.data" "${CMD[@]}" >"$OUT/tollway.log" 2>&1 & TW_PID=$!; pids+=("$TW_PID")
wait_up tollway $TW_PID "http://127.0.0.1:$TW_PORT/healthz"
cmd_of litellm "$LL_PORT"; "${CMD[@]}" >"$OUT/litellm.log" 2>&1 & LL_PID=$!; pids+=("$LL_PID")
wait_up litellm $LL_PID "http://127.0.0.1:$LL_PORT/health/liveliness"
cmd_of portkey "$PK_PORT"; "${CMD[@]}" >"$OUT/portkey.log" 2>&1 & PK_PID=$!; pids+=("$PK_PID")
wait_up portkey $PK_PID "http://127.0.0.1:$PK_PORT/"
ss -ltnH "sport = :$PK_PORT" | awk '{print $4}' >"$OUT/portkey.listen"
grep -qv '^127\.0\.0\.1:' "$OUT/portkey.listen" && die "Portkey listens beyond loopback: $(cat "$OUT/portkey.listen")"

# Tollway billing on (as in bench/billing.sh): a priced model, a key with a balance and limits it never reaches
. "$HERE/bench/lib.sh"  # priced_key, tree_cpu
TW_KEY=$(priced_key "$TW_PORT" "$ADMIN") && [ -n "$TW_KEY" ] || die "Tollway: cannot price gpt-4o-mini or make a key"

port() { case $1 in mock) echo $MOCK_PORT ;; tollway) echo $TW_PORT ;; litellm) echo $LL_PORT ;; portkey) echo $PK_PORT ;; esac; }
pid() { case $1 in mock) echo $MOCK_PID ;; tollway) echo $TW_PID ;; litellm) echo $LL_PID ;; portkey) echo $PK_PID ;; esac; }
key() { case $1 in mock) echo "" ;; tollway) echo "$TW_KEY" ;; litellm) echo "$LL_KEY" ;; portkey) echo sk-mock ;; esac; }
hdrs() {  # Portkey: the provider and the mock as its custom host; its bearer goes to the upstream
  [ "$1" = portkey ] && echo "x-portkey-provider: openai|x-portkey-custom-host: http://127.0.0.1:$MOCK_PORT/v1"; }
TARGETS=(mock tollway litellm portkey)
GATEWAYS=(tollway litellm portkey)

# CPU ticks of a process tree: tree_cpu (bench/lib.sh); its memory (RSS, PSS in MiB, process count)
cat >"$OUT/proc.py" <<'EOF'
import json, os, sys
sys.path.insert(0, os.environ["KIT"])
from procmon import pss, sample, tree
pids = tree(int(sys.argv[2]))
rss, _, n = sample(pids)
print(json.dumps({"gateway": sys.argv[1], "when": sys.argv[3], "rss_mb": rss / 2**20, "pss_mb": pss(pids) / 2**20, "nprocs": n}))
EOF
ticks() { tree_cpu "$1"; }
mem() { KIT="$KIT" python3 "$OUT/proc.py" "$1" "$(pid "$1")" "$2" >>"$OUT/mem.jsonl"; }

# --- every target answers 200 with the mock's content, non-stream and stream --------------------------
MSG='[{"role":"user","content":"Say hello in one short sentence."}]'
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"messages\":$MSG}" >"$OUT/ns.json"
echo "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"stream\":true,\"messages\":$MSG}" >"$OUT/stream.json"
post() {  # target body-file out-file: prints the HTTP status
  local args=(-sS -m 30 -o "$3" -w '%{http_code}' "http://127.0.0.1:$(port "$1")/v1/chat/completions"
              -H 'Content-Type: application/json' --data-binary "@$2")
  [ -n "$(key "$1")" ] && args+=(-H "Authorization: Bearer $(key "$1")")
  local IFS='|'; for h in $(hdrs "$1"); do args+=(-H "$h"); done
  curl "${args[@]}"
}
for t in "${TARGETS[@]}"; do
  for c in ns stream; do
    code=$(post "$t" "$OUT/$c.json" "$OUT/check/$t-$c.txt")
    [ "$code" = 200 ] || die "$t $c: HTTP $code; see $OUT/check/$t-$c.txt"
  done
done
python3 - "$OUT/check" "$CHUNKS" "${TARGETS[@]}" >"$OUT/check/summary.txt" <<'EOF'; ok=$?
import json, sys
d, chunks, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ns(t):
    return json.load(open(f"{d}/{t}-ns.txt"))["choices"][0]["message"]["content"]
def stream(t):
    frames = [l[6:] for l in open(f"{d}/{t}-stream.txt").read().splitlines() if l.startswith("data: ")]
    done = bool(frames) and frames[-1] == "[DONE]"
    parts = [c["delta"].get("content") for f in frames if f != "[DONE]" for c in json.loads(f).get("choices", [])]
    parts = [p for p in parts if p]
    return "".join(parts), len(parts), done
want_ns, (want_st, _, _) = ns("mock"), stream("mock")
bad = False
for t in targets:
    text, n, done = stream(t)
    ok = ns(t) == want_ns and text == want_st and n == chunks and done
    bad |= not ok
    print(f"check {t:<8} non-stream 200, content {'= mock' if ns(t) == want_ns else 'DIFFERS'}; stream 200, "
          f"{n} content chunks, {'[DONE]' if done else 'no [DONE]'}, text {'= mock' if text == want_st else 'DIFFERS'}"
          f"{'' if ok else '  <-- FAIL'}")
print(f"mock content: {want_ns[:60]}...")
sys.exit(1 if bad else 0)
EOF
cat "$OUT/check/summary.txt"; [ $ok = 0 ] || die "a target's answer is not the mock's; see $OUT/check"

sleep 5  # idle after start (and one request each)
for g in "${GATEWAYS[@]}"; do mem $g idle-after-start; done

# --- load: wrk against one target, CPU of its tree before and after ---------------------------------
wrk_run() {  # target test seconds meta-json-or-empty out-jsonl
  local body=ns.json c=$CONC th=2
  [ "$2" = stream ] && body=stream.json
  [ "$2" = c1 ] && c=1 th=1
  BENCH_BODY_FILE="$OUT/$body" BENCH_KEY="$(key "$1")" BENCH_HEADERS="$(hdrs "$1")" BENCH_OUT="$5" BENCH_META="$4" \
    timeout $(($3 + 30)) wrk -t$th -c$c -d"$3s" --timeout 30s -s "$KIT/wrk_post.lua" \
    "http://127.0.0.1:$(port "$1")/v1/chat/completions"
}
measure() {  # target test round
  local p before after; p=$(pid "$1")
  rm -f "$OUT/wrk/last.jsonl"
  before=$(ticks "$p")
  wrk_run "$1" "$2" "$DURATION" "\"target\":\"$1\",\"test\":\"$2\",\"round\":$3" "$OUT/wrk/last.jsonl" \
    >"$OUT/wrk/$1-$2-r$3.txt" 2>&1
  after=$(ticks "$p")
  kill -0 "$p" 2>/dev/null || die "$1 has exited; see $OUT/$1.log"
  [ -s "$OUT/wrk/last.jsonl" ] || die "no wrk result for $1 $2 round $3; see $OUT/wrk/$1-$2-r$3.txt"
  python3 - "$OUT/wrk/last.jsonl" "$((after - before))" "$(getconf CLK_TCK)" "$OUT/results.jsonl" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
cpu_s = int(sys.argv[2]) / int(sys.argv[3])
d["cpu_ms_per_req"] = 1000 * cpu_s / max(d["requests"], 1)
d["cpu_pct"] = 100 * cpu_s / d["duration_s"]
d["sock_errors"] = sum(d[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
open(sys.argv[4], "a").write(json.dumps(d) + "\n")
print(f"  {d['test']:<6} {d['target']:<8} {d['rps']:>9.1f} req/s  p50 {d['lat_p50_ms']:7.2f} ms  p99 {d['lat_p99_ms']:8.2f} ms  "
      f"{d['cpu_ms_per_req']:7.3f} ms CPU/req ({d['cpu_pct']:3.0f}%)  non-2xx={d['err_status']} socket-errors={d['sock_errors']}")
EOF
}

# --- start-up: launch -> first 200 of a GET on the health path, polled in a tight loop ----------------
cat >"$OUT/startup.py" <<'EOF'
import json, os, socket, subprocess, sys, time
sys.path.insert(0, os.environ["KIT"])
from killtree import kill_tree
name, rnd, port, path, log, out = sys.argv[1:7]
cmd = sys.argv[7:]
def ok():
    try:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    except OSError:
        return False
    try:
        s.settimeout(10)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        return s.recv(16).split(b" ")[1:2] == [b"200"]
    except (OSError, IndexError):
        return False
    finally:
        s.close()
with open(log, "ab") as f:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
t, polls = None, 0
try:
    while time.perf_counter() - t0 < 120 and p.poll() is None:
        polls += 1
        if ok():
            t = time.perf_counter() - t0
            break
        time.sleep(0.002)
finally:
    kill_tree(p.pid)
line = {"gateway": name, "round": int(rnd), "t_first_200_s": t, "polls": polls}
open(out, "a").write(json.dumps(line) + "\n")
print(f"  start  {name:<16} first 200 after {t if t is None else round(t, 3)} s ({polls} polls)")
sys.exit(0 if t is not None else 1)
EOF
SU=(tollway-existing tollway-fresh litellm portkey)
startup() {  # which round
  local data="" port path
  case $1 in
    tollway-existing) data="$OUT/startup-existing.data" ;;
    tollway-fresh) data=$(mktemp -d "$OUT/startup-fresh.XXXX") ;;
  esac
  case $1 in
    tollway*) cmd_of tollway "$SU_TW_PORT"; port=$SU_TW_PORT path=/healthz ;;
    litellm) cmd_of litellm "$SU_LL_PORT"; port=$SU_LL_PORT path=/health/liveliness ;;
    portkey) cmd_of portkey "$SU_PK_PORT"; port=$SU_PK_PORT path=/ ;;
  esac
  TOLLWAY_DATA_DIR=$data KIT="$KIT" python3 "$OUT/startup.py" "$1" "$2" "$port" "$path" "$OUT/startup-$1.log" \
    "$OUT/startup.jsonl" "${CMD[@]}" || echo "  start  $1 round $2: no 200 (see $OUT/startup-$1.log)"
  [ "$1" = tollway-fresh ] && rm -rf "$data"
  return 0
}
if [ "$STARTUP" = 1 ]; then  # the "existing" data dir: made by one start that is not recorded
  mkdir -p "$OUT/startup-existing.data"
  startup tollway-existing 0 >/dev/null
fi

TESTS=(ns stream c1)
if [ "$WARMUP" != 0 ]; then
  echo "warm-up: ${WARMUP}s of each test on each target (${TARGETS[*]})"
  for t in "${TARGETS[@]}"; do for c in "${TESTS[@]}"; do wrk_run "$t" "$c" "$WARMUP" "" /dev/null >/dev/null 2>&1; done; done
fi
n=${#TARGETS[@]}
for r in $(seq "$ROUNDS"); do
  echo "round $r (ns and stream c=$CONC, c1 c=1; ${DURATION}s each)"
  for c in "${TESTS[@]}"; do
    for k in $(seq 0 $((n - 1))); do measure "${TARGETS[$(((k + r - 1) % n))]}" "$c" "$r"; done
  done
  if [ "$STARTUP" = 1 ]; then
    for k in $(seq 0 $((${#SU[@]} - 1))); do startup "${SU[$(((k + r - 1) % ${#SU[@]}))]}" "$r"; done
  fi
done 2>&1 | tee "$OUT/rounds.txt"
[ "${PIPESTATUS[0]}" = 0 ] || die "a round failed; see $OUT/rounds.txt"

sleep 5  # idle after the runs
for g in "${GATEWAYS[@]}"; do mem $g idle-after-runs; done

# --- the tables -----------------------------------------------------------------------------------------
python3 - "$OUT" "$CONC" "$DURATION" "$ROUNDS" "$CHUNKS" <<'EOF' | tee "$OUT/summary.md"
import json, os, sys
from statistics import median
out, conc, duration, rounds, chunks = sys.argv[1:6]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl")]
mem = [json.loads(l) for l in open(f"{out}/mem.jsonl")]
su = [json.loads(l) for l in open(f"{out}/startup.jsonl")] if os.path.exists(f"{out}/startup.jsonl") else []
su = [d for d in su if d["round"] > 0]
targets, gateways = ["mock", "tollway", "litellm", "portkey"], ["tollway", "litellm", "portkey"]
tests = {"ns": f"non-stream c={conc}", "stream": f"stream c={conc} ({chunks} chunks)", "c1": "non-stream c=1"}
def sel(t, c): return sorted((d for d in rows if d["target"] == t and d["test"] == c), key=lambda d: d["round"])
def med(t, c, k): return median(d[k] for d in sel(t, c))
def f(x, nd=None):
    if nd is None: nd = 0 if x >= 100 else 1 if x >= 10 else 2
    return f"{x:,.{nd}f}"
print(f"## Peers: medians of {rounds} interleaved rounds, wrk {duration} s per cell\n")
print("| test | target | req/s | req/s per round | p50 ms | p99 ms | CPU ms/req | CPU % | non-2xx | socket errors |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
for c, label in tests.items():
    for i, t in enumerate(targets):
        rs = sel(t, c)
        if not rs: continue
        name = "mock (floor)" if t == "mock" else t
        print(f"| {label if i == 0 else ''} | {name} | {f(med(t, c, 'rps'))} | {' / '.join(f(d['rps']) for d in rs)} | "
              f"{f(med(t, c, 'lat_p50_ms'))} | {f(med(t, c, 'lat_p99_ms'))} | {med(t, c, 'cpu_ms_per_req'):.3f} | "
              f"{med(t, c, 'cpu_pct'):.0f} | {sum(d['err_status'] for d in rs)} | {sum(d['sock_errors'] for d in rs)} |")
print("\n## Ratios (of the medians)\n")
print("| test | req/s tollway/litellm | req/s tollway/portkey | CPU ms/req tollway/litellm | CPU ms/req tollway/portkey "
      "| p50 tollway/litellm | p50 tollway/portkey | p99 tollway/litellm | p99 tollway/portkey |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for c, label in tests.items():
    def r(k, b): return med("tollway", c, k) / med(b, c, k)
    print(f"| {label} | {r('rps', 'litellm'):.1f}x | {r('rps', 'portkey'):.2f}x | {r('cpu_ms_per_req', 'litellm'):.3f} | "
          f"{r('cpu_ms_per_req', 'portkey'):.2f} | {r('lat_p50_ms', 'litellm'):.3f} | {r('lat_p50_ms', 'portkey'):.2f} | "
          f"{r('lat_p99_ms', 'litellm'):.3f} | {r('lat_p99_ms', 'portkey'):.2f} |")
print("\nAdded latency at c=1 over the mock floor (median p50 / p99, ms): " + ", ".join(
    f"{g} {med(g, 'c1', 'lat_p50_ms') - med('mock', 'c1', 'lat_p50_ms'):+.2f} / "
    f"{med(g, 'c1', 'lat_p99_ms') - med('mock', 'c1', 'lat_p99_ms'):+.2f}" for g in gateways))
print("\n## Memory of each gateway's process tree (MiB)\n")
print("| gateway | processes | RSS idle after start | PSS idle after start | RSS idle after runs | PSS idle after runs |")
print("|---|---:|---:|---:|---:|---:|")
for g in gateways:
    a = next(d for d in mem if d["gateway"] == g and d["when"] == "idle-after-start")
    z = next(d for d in mem if d["gateway"] == g and d["when"] == "idle-after-runs")
    print(f"| {g} | {z['nprocs']} | {a['rss_mb']:.1f} | {a['pss_mb']:.1f} | {z['rss_mb']:.1f} | {z['pss_mb']:.1f} |")
if su:
    print("\n## Start-up: launch to first 200 of a health GET (s)\n")
    print("| gateway | health path | per round | median |")
    print("|---|---|---|---:|")
    paths = {"tollway-existing": "/healthz", "tollway-fresh": "/healthz", "litellm": "/health/liveliness", "portkey": "/"}
    for g in paths:
        ts = [d["t_first_200_s"] for d in sorted(su, key=lambda d: d["round"]) if d["gateway"] == g]
        ok = [t for t in ts if t is not None]
        cells = " / ".join("-" if t is None else f"{t:.3f}" for t in ts)
        print(f"| {g} | {paths[g]} | {cells} | {median(ok):.3f} |" if ok else f"| {g} | {paths[g]} | {cells} | - |")
EOF
echo
cat "$OUT/versions.txt"
echo "raw: $OUT (results.jsonl, mem.jsonl, startup.jsonl, wrk/, check/)"
