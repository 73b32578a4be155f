#!/usr/bin/env bash
# Idle memory per connection: VmRSS with 10,000 then 19,900 connections held, one fresh
# broker per round, loopback only. B=path/to/shardmq to measure another build.
# Needs release builds: cargo build --release --workspace
set -u
cd "$(dirname "$0")/.."
ulimit -n 100000 2>/dev/null || true
B=${B:-target/release/shardmq}; LT=target/release/shardmq-loadtest
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
for round in 1 2; do
  P=$(free_port)
  $B --listen 127.0.0.1:$P --log-level warn > /dev/null 2>&1 & BP=$!
  sleep 1
  $LT conn --connections 10000 --threads 2 --duration 40 --keep-alive 600 --port $P -q > /tmp/idle-l1.txt 2>&1 & L1=$!
  sleep 15; R1=$(awk '/VmRSS/{print $2}' /proc/$BP/status)
  $LT conn --connections 9900 --threads 2 --duration 15 --keep-alive 600 --port $P -q > /tmp/idle-l2.txt 2>&1 & L2=$!
  sleep 13; R2=$(awk '/VmRSS/{print $2}' /proc/$BP/status)
  wait $L1 $L2; kill -INT $BP; wait $BP 2>/dev/null
  echo "round $round: RSS at 10,000 = ${R1} kB, at 19,900 = ${R2} kB, per connection = $(( (R2-R1)*1024/9900 )) bytes"
done
