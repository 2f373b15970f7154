#!/bin/bash
# The cached assignment against the build before keys, limits and logs landed (d88c89f), and
# against the same-shape endpoint (bench/trivial_app.py): three servers side by side, each on
# core 0, SQLite + memory cache, API_TOKENS, the request log and the default rate limits on as
# deployed; wrk -t1 -c32 -d10s on core 1 against one warm assignment, the arms in rotating
# order for ROUNDS rounds. Prints req/s and the server's CPU time per request
# (/proc/<pid>/stat, user + system), which other load on the machine disturbs less. Needs wrk
# and git (the old build is checked out into a temporary folder; nothing is installed).
#   ROUNDS=5 BASE_PORT=18420 OLD=d88c89f bench/cache_hit_ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=$(mktemp -d)
BASE=${BASE_PORT:-18420}
OLD=${OLD:-d88c89f}
ARMS=(shape old main)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; git worktree remove --force "$D/old" >/dev/null 2>&1; rm -rf "$D"' EXIT
TICK_US=$((1000000 / $(getconf CLK_TCK)))
PY=$PWD/.venv/bin/python
git worktree add -q --detach "$D/old" "$OLD"
taskset -c 0 "$PY" -m uvicorn bench.trivial_app:create --factory --port "$BASE" --loop uvloop \
  --http httptools --no-access-log --log-level warning >/dev/null 2>&1 &
PIDS+=($!)
(cd "$D/old" && API_TOKENS=t DATABASE_URL="sqlite:///$D/old.db" CACHE_URL=memory:// PORT=$((BASE + 1)) \
  PYTHONPATH="$D/old" exec taskset -c 0 "$PY" -m entrypoints serve >/dev/null 2>"$D/old.err") &
PIDS+=($!)
API_TOKENS=t DATABASE_URL="sqlite:///$D/main.db" CACHE_URL=memory:// PORT=$((BASE + 2)) \
  taskset -c 0 "$PY" -m entrypoints serve >/dev/null 2>"$D/main.err" &
PIDS+=($!)
echo "http://127.0.0.1:$BASE/shape/experiments/$(printf '0%.0s' {1..32})/assignment/u1" >"$D/shape.url"
TOKENS=(bench-token t t)
for i in 1 2; do
  arm=${ARMS[$i]}; B=http://127.0.0.1:$((BASE + i))
  until curl -sf "$B/health" >/dev/null; do sleep 0.3; done
  E=$(curl -s -X POST "$B/experiments" -H 'Authorization: Bearer t' -H 'Content-Type: application/json' \
    -d '{"name":"a","primary_event_type":"p","variants":[{"name":"c","traffic_percentage":50,"is_control":true},{"name":"g","traffic_percentage":50}]}' \
    | python3 -c "import sys, json; print(json.load(sys.stdin)['id'])")
  echo "$B/experiments/$E/assignment/u1" >"$D/$arm.url"
done
until curl -sf -H 'Authorization: Bearer bench-token' "$(cat "$D/shape.url")" >/dev/null; do sleep 0.3; done
# The servers' pids: uvicorn's own for the shape, the serving process (the CLI execs uvicorn in it).
for i in 0 1 2; do
  arm=${ARMS[$i]}
  curl -sf "$(cat "$D/$arm.url")" -H "Authorization: Bearer ${TOKENS[$i]}" >/dev/null
  taskset -c 1 wrk -t1 -c32 -d3s -H "Authorization: Bearer ${TOKENS[$i]}" "$(cat "$D/$arm.url")" >/dev/null
done
pid_on() { ss -ltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
echo "round arm req/s server-cpu-us-per-request"
for round in $(seq 1 "${ROUNDS:-5}"); do
  for k in 0 1 2; do
    i=$(((round + k) % 3)); arm=${ARMS[$i]}; pid=$(pid_on $((BASE + i)))
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(taskset -c 1 wrk -t1 -c32 -d10s -H "Authorization: Bearer ${TOKENS[$i]}" "$(cat "$D/$arm.url")")
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo "$round $arm $rps $(((after - before) * TICK_US / n))"
  done
done
