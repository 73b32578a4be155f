#!/bin/bash
# Issue 17 side by side on loopback: tools/issue17-side-by-side.sh BROKER OUTDIR [sets...]
# sets: manytoone share payload p2pq1 (default all). Each scenario alternates the targets,
# medians of 3 runs of 3 s; OUTDIR/summary.txt collects the tables. FLASHMQ: the binary
# (../shared/peers/build-flashmq.sh target/peers builds it); LT: the load generator.
# Targets: new --shards 1 (s1) and 2 (s2), FlashMQ 1 thread (flashmq1), relay --threads 2.
NEW=$1; OUT=$2; shift 2; SETS=${*:-"manytoone share payload p2pq1"}
mkdir -p $OUT; LT=${LT:-target/release/shardmq-loadtest}; FLASHMQ=${FLASHMQ:-target/peers/flashmq}
PIDS=()
port() { for i in $(seq 1 50); do a=$(ss -ltnp | grep "pid=$1," | grep -o '127.0.0.1:[0-9]*' | head -1); [ -n "$a" ] && { echo $a; return; }; sleep 0.2; done; }
start() { # name cmd...
  local name=$1; shift; "$@" > $OUT/$name.log 2>&1 & local p=$!; PIDS+=($p); local a=$(port $p); echo "$name=$a $p"; }
FP=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > $OUT/flashmq.conf <<EOC
thread_count 1
allow_anonymous true
log_level warning
max_qos_msg_pending_per_client 65535
max_qos_bytes_pending_per_client 268435456
listen {
  protocol mqtt
  inet_protocol ip4
  inet4_bind_address 127.0.0.1
  port $FP
}
EOC
read S1 S1P < <(start s1 $NEW --listen 127.0.0.1:0 --shards 1 --log-level warn)
read S2 S2P < <(start s2 $NEW --listen 127.0.0.1:0 --shards 2 --log-level warn)
read RL RLP < <(start relay $LT relay --listen 127.0.0.1:0 --threads 2)
"$FLASHMQ" --config-file $OUT/flashmq.conf > $OUT/flashmq.log 2>&1 & FMP=$!; PIDS+=($FMP); sleep 1; FM="flashmq1=127.0.0.1:$FP $FMP"
t() { local n=${1%%=*}; local rest=${1#*=}; echo "--target $n=${rest%% *} --pid $n=${rest##* }"; }
T_S1=$(t "$S1 $S1P"); T_S2=$(t "$S2 $S2P"); T_RL=$(t "$RL $RLP"); T_FM=$(t "$FM")
C="--duration 3 --warmup 1 --repeat 3 -q"
run() { local name=$1; shift; echo "=== $name: $*" | tee -a $OUT/summary.txt; $LT "$@" $C --json $OUT/$name.json 2>&1 | grep -A8 "^target" | tee -a $OUT/summary.txt; }
date -u +"start %H:%M:%S" >> $OUT/summary.txt
for set in $SETS; do case $set in
manytoone) for p in 8 64; do run fanin$p fanin --publishers $p --subscribers 1 --qos 1 --inflight 64 --mqtt 5 $T_S1 $T_S2 $T_FM; done;;
share) for p in 8 64; do run share$p sharedsub --publishers $p --subscribers 4 --qos 1 --inflight 64 --mqtt 5 $T_S1 $T_S2 $T_FM; done;;
payload) for q in 0 1; do for s in 1024 16384; do run pay-q$q-$s p2p --pairs 8 --qos $q --inflight 64 --payload $s $T_S1 $T_S2 $T_RL; done; done;;
p2pq1) run p2p-q1 p2p --pairs 8 --qos 1 --inflight 64 $T_S1 $T_S2 $T_RL;;
esac; done
date -u +"end %H:%M:%S" >> $OUT/summary.txt
for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; wait 2>/dev/null
