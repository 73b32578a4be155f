#!/usr/bin/env bash
# Instructions per message of one broker under callgrind (issue 17's profiles).
#   tools/callgrind-per-message.sh BROKER OUT <loadtest scenario args>
#   SHARDS=2 tools/callgrind-per-message.sh target/release/shardmq cg.out p2p --pairs 8 --qos 1 --duration 3
# Starts BROKER (`--shards ${SHARDS:-1}`) under valgrind on a free loopback port, drives it with
# the load generator (raw engine, 1 thread, no warmup; every load bounded by --duration), stops
# it with SIGINT and prints total instructions, messages, and (total - 1.68 M idle) / sent.
# Needs valgrind and python3; LT=path/to/shardmq-loadtest (default target/release).
set -u
BIN=$1; OUT=$2; shift 2
LT=${LT:-target/release/shardmq-loadtest}
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" --listen 127.0.0.1:0 \
  --shards "${SHARDS:-1}" --log-level warn > /dev/null 2> "$OUT.err" & VP=$!
A=
for _ in $(seq 1 50); do
  A=$(ss -ltnp | grep "pid=$VP," | grep -o '127.0.0.1:[0-9]*' | head -1)
  [ -n "$A" ] && break
  sleep 0.3
done
"$LT" "$@" --warmup 0 --engine raw --threads 1 --quiet --port "${A##*:}" --json "$OUT.json" > /dev/null 2>&1
kill -INT $VP; wait $VP
TOT=$(grep -o "Collected : [0-9]*" "$OUT.err" | grep -o "[0-9]*")
python3 - "$OUT.json" "$TOT" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
total = int(sys.argv[2])
print(f"total={total} sent={run['sent']} received={run.get('received')} "
      f"per_msg={(total - 1_680_000) / run['sent']:.0f}")
PY
