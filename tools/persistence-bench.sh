#!/usr/bin/env bash
# Throughput with persistence (issue 14), short runs on loopback: QoS 1 point-to-point and
# fan-in into persistent sessions (3.1.1 Clean Session 0) against shardmq with --persistence
# sync, periodic and off, and Mosquitto with `persistence true`; plus the disk's raw fsync
# rate. Prints one line per run (deliveries per second from the load generator, and the
# broker's records and fsyncs from its shutdown log line) into target/persistence-bench/.
#
#   tools/persistence-bench.sh            # DURATION [5] WARMUP [1] PAIRS [10] FANIN_PUBS [10] SHARDS [2]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
PAIRS=${PAIRS:-10}
FANIN_PUBS=${FANIN_PUBS:-10}
SHARDS=${SHARDS:-2}
OUT=target/persistence-bench
mkdir -p "$OUT"
cargo build --release -q -p shardmq -p shardmq-loadtest

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# The disk's own rate: 1,000 synchronous 4 KiB writes (O_DSYNC: one flush each).
DISK="$OUT/disk"
rm -rf "$DISK" && mkdir -p "$DISK"
start=$(date +%s.%N)
dd if=/dev/zero of="$DISK/f" bs=4k count=1000 oflag=dsync 2>/dev/null
end=$(date +%s.%N)
echo "raw fsync rate: $(python3 -c "print(round(1000/($end-$start)))") per second (dd bs=4k count=1000 oflag=dsync)" | tee "$OUT/results.txt"

run_load() { # NAME PORT SCENARIO...
  local name=$1 port=$2; shift 2
  LOADTEST_CLEAN_SESSION=0 target/release/shardmq-loadtest "$@" --qos 1 --duration "$DURATION" \
    --warmup "$WARMUP" --port "$port" --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 || true
  python3 - "$OUT/$name.json" "$name" <<'PY' | tee -a "$OUT/results.txt"
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"{sys.argv[2]}: no report ({e})"); sys.exit()
runs = d.get("runs") or d.get("reports") or [d]
r = runs[0] if isinstance(runs, list) else runs
rate = r.get("received", 0) / max(r.get("duration_s", 1), 1e-9)
print(f"{sys.argv[2]}: received {r.get('received')} in {r.get('duration_s')} s = {rate:,.0f} msg/s, expected {r.get('expected')}")
PY
}

for mode in sync periodic off; do
  for scenario in p2p fanin; do
    port=$(free_port); dir="$OUT/data-$mode"; rm -rf "$dir"
    target/release/shardmq --listen "127.0.0.1:$port" --shards "$SHARDS" --persistence "$mode" \
      --persistence-dir "$dir" --max-queued-messages 100000 >"$OUT/shardmq-$mode-$scenario.log" 2>&1 &
    pid=$!
    wait_port "$port"
    if [ "$scenario" = p2p ]; then
      run_load "shardmq-$mode-p2p" "$port" p2p --pairs "$PAIRS"
    else
      run_load "shardmq-$mode-fanin" "$port" fanin --publishers "$FANIN_PUBS" --subscribers 1
    fi
    kill -TERM "$pid"; wait "$pid" || true
    grep -h "persistence totals" "$OUT/shardmq-$mode-$scenario.log" | sed "s/^/  shardmq-$mode-$scenario /" | tee -a "$OUT/results.txt" || true
    du -sh "$dir" 2>/dev/null | sed "s/^/  disk: /" | tee -a "$OUT/results.txt" || true
  done
done

MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for scenario in p2p fanin; do
  port=$(free_port); dir="$OUT/data-mosquitto/"; rm -rf "$dir"; mkdir -p "$dir"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s\nmax_queued_messages 100000\n' \
    "$port" "$dir" >"$OUT/mosquitto.conf"
  "$MOSQUITTO" -c "$OUT/mosquitto.conf" >"$OUT/mosquitto-$scenario.log" 2>&1 &
  pid=$!
  wait_port "$port"
  if [ "$scenario" = p2p ]; then
    run_load "mosquitto-persist-p2p" "$port" p2p --pairs "$PAIRS"
  else
    run_load "mosquitto-persist-fanin" "$port" fanin --publishers "$FANIN_PUBS" --subscribers 1
  fi
  kill -TERM "$pid"; wait "$pid" || true
done
