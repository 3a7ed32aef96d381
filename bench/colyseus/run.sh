#!/usr/bin/env bash
# One bounded run of the "cubes" benchmark (docs/BENCHMARKS.md) against Colyseus.
#
#   npm ci --prefix bench/colyseus      # once: the pinned packages of package-lock.json
#   bench/colyseus/run.sh N R           # e.g. bench/colyseus/run.sh 400 8
#
# 1. waits (at most QUIET_MAX s) until CPU 0 and CPU 1 have both been under 5% busy for 3 s;
# 2. starts server.mjs pinned to CPU 0 (taskset), on 127.0.0.1 and a free port;
# 3. runs loadgen.mjs pinned to CPU 1: N clients in rooms of R, 5 s warm-up, 20 s window;
# 4. stops the server (TERM, then KILL after 5 s) and prints the figures: a summary in the units
#    of docs/BENCHMARKS.md, then one JSON line (what bench/run.py --colyseus reads).
# Everything ends by itself: the load generator has its own hard stop, `timeout` backs it up, and
# the server exits when its --lifetime is over. Logs go to LOGDIR (default bench/colyseus/logs).
#
# Environment: WARMUP (5), WINDOW (20), GRACE (0.5), JOIN_TIMEOUT (60), QUIET_MAX (30),
# DECODE_EVERY (1; K > 1 is a probe, NOT the scenario: only every K-th client decodes), SEED,
# LOGDIR.
set -u
N=${1:?usage: run.sh N R}
R=${2:?usage: run.sh N R}
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
WARMUP=${WARMUP:-5}
WINDOW=${WINDOW:-20}
GRACE=${GRACE:-0.5}
JOIN_TIMEOUT=${JOIN_TIMEOUT:-60}
QUIET_MAX=${QUIET_MAX:-30}
DECODE_EVERY=${DECODE_EVERY:-1}
SEED=${SEED:-}
LOGDIR=${LOGDIR:-$HERE/logs}

if [ ! -d node_modules/@colyseus/core ]; then
  echo "run.sh: the packages are not installed: run 'npm ci --prefix bench/colyseus' first" >&2
  exit 1
fi
for tool in node taskset timeout getconf; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is needed" >&2; exit 1; }
done
mkdir -p "$LOGDIR"
STAMP="n${N}-r${R}-$(date +%Y%m%d-%H%M%S)-$$"
SERVER_LOG="$LOGDIR/$STAMP.server.log"
LOADGEN_LOG="$LOGDIR/$STAMP.loadgen.log"
CLK=$(getconf CLK_TCK)

# -- 1. quiet CPUs ---------------------------------------------------------------------------------
busy_percent() {   # "busy0 busy1": percent busy of CPU 0 and CPU 1 over one second
  local before after
  before=$(grep -E '^cpu[01] ' /proc/stat)
  sleep 1
  after=$(grep -E '^cpu[01] ' /proc/stat)
  printf '%s\n%s\n' "$before" "$after" | awk '
    { busy = 0; total = 0
      for (i = 2; i <= 9; i++) { total += $i; if (i != 5 && i != 6) busy += $i }
      if (NR <= 2) { b[$1] = busy; t[$1] = total }
      else { dt = total - t[$1]; if (dt < 1) dt = 1; printf "%d ", 100 * (busy - b[$1]) / dt } }'
}
started=$(date +%s)
quiet=0
while [ $(( $(date +%s) - started )) -lt "$QUIET_MAX" ] && [ "$quiet" -lt 3 ]; do
  read -r b0 b1 < <(busy_percent)
  if [ "${b0:-100}" -le 5 ] && [ "${b1:-100}" -le 5 ]; then quiet=$((quiet + 1)); else quiet=0; fi
done
QUIET_WAIT=$(( $(date +%s) - started ))
[ "$quiet" -ge 3 ] || echo "run.sh: CPUs still busy after ${QUIET_MAX} s; running anyway" >&2

# -- 2. the server, on CPU 0 -------------------------------------------------------------------------
LIMIT=$(awk -v j="$JOIN_TIMEOUT" -v w="$WARMUP" -v d="$WINDOW" -v g="$GRACE" \
  'BEGIN { printf "%d", 3 * j + w + d + g + 30 }')
: >"$SERVER_LOG"
taskset -c 0 node server.mjs 0 --lifetime "$LIMIT" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!               # taskset execs node: this is the server's own PID
stop_server() {
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  wait "$SERVER_PID" 2>/dev/null
}
trap stop_server EXIT
PORT=""
for _ in $(seq 150); do
  PORT=$(sed -n 's/^LISTENING \([0-9]*\) .*/\1/p' "$SERVER_LOG")
  [ -n "$PORT" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  echo "run.sh: the server did not start; its log:" >&2
  cat "$SERVER_LOG" >&2
  exit 1
fi

# -- 3. the load generator, on CPU 1 -----------------------------------------------------------------
RESULT=$(timeout -s KILL "$LIMIT" taskset -c 1 node loadgen.mjs --port "$PORT" -n "$N" -r "$R" \
  --warmup "$WARMUP" --duration "$WINDOW" --grace "$GRACE" --join-timeout "$JOIN_TIMEOUT" \
  --server-pid "$SERVER_PID" --clk-tck "$CLK" --decode-every "$DECODE_EVERY" \
  ${SEED:+--seed "$SEED"} 2>"$LOADGEN_LOG")
STATUS=$?

# -- 4. stop the server, print the figures ----------------------------------------------------------
stop_server
trap - EXIT
if [ "$STATUS" -ne 0 ] || [ -z "$RESULT" ]; then
  echo "run.sh: the load generator failed (exit $STATUS); the end of its log ($LOADGEN_LOG):" >&2
  tail -n 5 "$LOADGEN_LOG" >&2
  exit 1
fi
printf '%s\n' "$RESULT" | node report.mjs "$QUIET_WAIT"
