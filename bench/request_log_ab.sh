#!/bin/bash
# The request log over HTTP: three servers (text lines, JSON lines, LOG_LEVEL=warning: none),
# SQLite + memory cache, one assignment warmed; wrk -t1 -c32 -d10s on the cached assignment,
# the arms in rotating order for ROUNDS rounds. Prints req/s and the server's CPU time per
# request (/proc/<pid>/stat, user + system) for each run. Needs wrk.
#   ROUNDS=5 BASE_PORT=18410 bench/request_log_ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=$(mktemp -d)
BASE=${BASE_PORT:-18410}
ARMS=(text json warning)
declare -A ENVS=([text]="LOG_FORMAT=text" [json]="LOG_FORMAT=json" [warning]="LOG_LEVEL=warning")
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$D"' EXIT
TICK_US=$((1000000 / $(getconf CLK_TCK)))
for i in 0 1 2; do
  arm=${ARMS[$i]}
  env API_TOKENS=t DATABASE_URL="sqlite:///$D/$arm.db" CACHE_URL=memory:// PORT=$((BASE + i)) \
    ${ENVS[$arm]} .venv/bin/python -m entrypoints serve 2>"$D/$arm.err" >/dev/null &
  PIDS+=($!)
done
for i in 0 1 2; do
  arm=${ARMS[$i]}; B=http://127.0.0.1:$((BASE + i))
  until curl -sf "$B/health" >/dev/null; do sleep 0.3; done
  E=$(curl -s -X POST "$B/experiments" -H 'Authorization: Bearer t' -H 'Content-Type: application/json' \
    -d '{"name":"a","primary_event_type":"p","variants":[{"name":"c","traffic_percentage":50,"is_control":true},{"name":"g","traffic_percentage":50}]}' \
    | python3 -c "import sys, json; print(json.load(sys.stdin)['id'])")
  echo "$B/experiments/$E/assignment/u1" >"$D/$arm.url"
  curl -sf "$(cat "$D/$arm.url")" -H 'Authorization: Bearer t' >/dev/null
  wrk -t1 -c32 -d3s -H 'Authorization: Bearer t' "$(cat "$D/$arm.url")" >/dev/null  # warm up
done
echo "round arm req/s server-cpu-us-per-request"
for round in $(seq 1 "${ROUNDS:-5}"); do
  for k in 0 1 2; do
    i=$(((round + k) % 3)); arm=${ARMS[$i]}; pid=${PIDS[$i]}
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(wrk -t1 -c32 -d10s -H 'Authorization: Bearer t' "$(cat "$D/$arm.url")")
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo "$round $arm $rps $(((after - before) * TICK_US / n))"
  done
done
