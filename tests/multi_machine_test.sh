#!/usr/bin/env bash
# Data-parallel training across two "machines": two network namespaces joined by a veth pair
# (192.0.2.1 and 192.0.2.2, the documentation range, inside the namespaces only), each node in
# a UTS namespace of its own with its own hostname (nodea, nodeb) and the hosts file that
# `ip netns exec` mounts from /etc/netns/NAME/hosts. On each, torchrun starts one rank of
# tests/distributed_child, as docs/guide.md's "Scaling out" shows:
#   1. c10d rendezvous (--rdzv_endpoint=nodea:29400, is_host=1 on nodea) ≡ one process;
#   2. static rendezvous (--node_rank, --master_addr=192.0.2.1) ≡ one process;
#   3. a node killed mid-run: the other ends in a named error within the timeout;
#   4. elastic (--nnodes=2:3): a third node arriving once two train either joins (the run
#      restarts with three ranks, ≡ one process) or is refused with a message.
# It makes and removes its namespaces and hosts files, sends traffic to no other address, and
# skips (exit 77) where namespaces cannot be made (not root, no `ip`).
#
#   multi_machine_test.sh DISTRIBUTED_CHILD COMPARE_SCRIPT
set -euo pipefail

child="$(realpath "$1")"
compare="$(realpath "$2")"
skip() {
  echo "SKIP: $*"
  exit 77
}
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip > /dev/null || skip "no ip command (iproute2)"
command -v unshare > /dev/null || skip "no unshare command (util-linux)"
torchrun=/usr/bin/torchrun
[ -x "$torchrun" ] || skip "no $torchrun (python3-torch)"

tag="dh$$"
hub="${tag}h"
a="${tag}a"
b="${tag}b"
c="${tag}c"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2> /dev/null || true; done
  for ns in "$a" "$b" "$c" "$hub"; do
    ip netns pids "$ns" 2> /dev/null | xargs -r kill -9 2> /dev/null || true
    ip netns del "$ns" 2> /dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "$work"
}
trap cleanup EXIT
# The "network": a bridge in a namespace of its own (hub), a veth pair from it to each node.
ip netns add "$hub" 2> /dev/null || skip "cannot make a network namespace here"
ip -n "$hub" link add "${tag}br" type bridge
ip -n "$hub" link set "${tag}br" up
number=1
for ns in "$a" "$b" "$c"; do
  ip netns add "$ns"
  ip link add "${ns}v" type veth peer name "${ns}p"
  ip link set "${ns}v" netns "$ns"
  ip link set "${ns}p" netns "$hub"
  ip -n "$hub" link set "${ns}p" master "${tag}br"
  ip -n "$hub" link set "${ns}p" up
  ip -n "$ns" addr add "192.0.2.$number/24" dev "${ns}v"
  ip -n "$ns" link set "${ns}v" up
  ip -n "$ns" link set lo up
  mkdir -p "/etc/netns/$ns"
  printf '127.0.0.1 localhost\n192.0.2.1 nodea\n192.0.2.2 nodeb\n192.0.2.3 nodec\n' \
    > "/etc/netns/$ns/hosts"
  number=$((number + 1))
done

# node NAMESPACE HOSTNAME INTERFACE COMMAND...: the command on that "machine".
node() {
  local ns="$1" host="$2" interface="$3"
  shift 3
  ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$host" \
    env GLOO_SOCKET_IFNAME="$interface" "$@"
}

# The one process both launches must match: the same data, batches of 2·4.
"$child" train sgd "$work/one.txt" passes=3 batch=8 distributed=0 momentum=0.5 > /dev/null

# launch NAME FLAGS_A FLAGS_B [CHILD ARGUMENTS...]: both nodes at once; waits for both.
launch() {
  local name="$1" flags_a="$2" flags_b="$3"
  shift 3
  local common=(--nnodes=2 --nproc_per_node=1 --redirects 1 --tee 1
                --log_dir "$work/$name-logs" --no_python "$child")
  # shellcheck disable=SC2086
  node "$a" nodea "${a}v" timeout 120 "$torchrun" $flags_a "${common[@]}" \
    train sgd "$work/$name-a.txt" "$@" > "$work/$name-a.log" 2>&1 &
  local pid_a=$!
  # shellcheck disable=SC2086
  node "$b" nodeb "${b}v" timeout 120 "$torchrun" $flags_b "${common[@]}" \
    train sgd "$work/$name-b.txt" "$@" > "$work/$name-b.log" 2>&1 &
  local pid_b=$!
  pids=("$pid_a" "$pid_b")
  status_a=0
  status_b=0
  wait "$pid_a" || status_a=$?
  wait "$pid_b" || status_b=$?
  pids=()
}

show() {
  for file in "$work/$1"-*.log "$work/$1"-*.txt; do
    echo "--- $file"
    tail -n 20 "$file" || true
  done
}

# equivalent NAME FLAGS_A FLAGS_B: both nodes train; they must end alike, as the one process.
equivalent() {
  launch "$1" "$2" "$3" passes=3 batch=4 momentum=0.5
  if [ "$status_a" != 0 ] || [ "$status_b" != 0 ]; then
    show "$1"
    echo "FAIL: the $1 launch ended with $status_a and $status_b"
    exit 1
  fi
  /usr/bin/python3 "$compare" "$work/$1-a.txt" "$work/$1-b.txt" "$work/one.txt" "$1"
}

# 1. c10d rendezvous: the endpoint is nodea's name, which nodeb resolves through its hosts file.
equivalent c10d \
  "--rdzv_backend=c10d --rdzv_endpoint=nodea:29400 --rdzv_id=downhill --rdzv_conf is_host=1" \
  "--rdzv_backend=c10d --rdzv_endpoint=nodea:29400 --rdzv_id=downhill"

# 2. static rendezvous: node ranks given, the master by address.
static="--master_addr=192.0.2.1 --master_port=29500"
equivalent static "--node_rank=0 $static" "--node_rank=1 $static"

# 3. nodeb's rank exits at once after pass 1 (die_at=1): nodea's rank ends in a named error
# within the timeout (10 s) and its torchrun fails.
start=$(date +%s)
launch killed "--node_rank=0 $static" "--node_rank=1 $static" passes=50 batch=4 die_at=1 \
  timeout=10
elapsed=$(($(date +%s) - start))
if [ "$status_a" = 0 ] || ! grep -q "^error: " "$work/killed-a.txt"; then
  show killed
  echo "FAIL: nodea did not end in an error after nodeb's rank died (status $status_a)"
  exit 1
fi
if [ "$elapsed" -gt 60 ]; then
  show killed
  echo "FAIL: nodea took ${elapsed} s to fail; its timeout is 10 s"
  exit 1
fi
echo "killed: nodea's rank ended in ${elapsed} s with: $(grep '^error: ' "$work/killed-a.txt")"
# 4. Elastic: nodea and nodeb start a run that allows 2 to 3 nodes (--nnodes=2:3); nodec arrives
# once they are training. Either it joins (the agents restart every rank with 3: the run starts
# again, and all three end alike, as one process with batches of 3·4) or it is refused with a
# message, and the two end as one process with batches of 2·4.
# --max_restarts: when nodec arrives, a rank may see its peer stopped for the new round before
# its own agent stops it, and fail; the agent then starts it again rather than giving up.
elastic="--nnodes=2:3 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=nodea:29401
  --rdzv_id=elastic --monitor_interval=1 --max_restarts=3 --redirects 1 --tee 1 --no_python"
arguments=(passes=12 batch=4 momentum=0.5 pass_sleep=0.4)
# elastic_node NAMESPACE HOSTNAME RDZV_CONF: one node of the elastic run, in the background.
elastic_node() {
  # shellcheck disable=SC2086
  node "$1" "$2" "${1}v" timeout 180 "$torchrun" $elastic --rdzv_conf "$3" \
    --log_dir "$work/elastic-$2-logs" "$child" train sgd "$work/elastic-$2.txt" \
    "${arguments[@]}" > "$work/elastic-$2.log" 2>&1 &
  pids+=($!)
}
pids=()
elastic_node "$a" nodea is_host=1,last_call_timeout=1
elastic_node "$b" nodeb last_call_timeout=1
for _ in $(seq 1 120); do
  grep -q "^pass 2" "$work/elastic-nodea.txt" 2> /dev/null && break
  sleep 0.5
done
if ! grep -q "^pass 2" "$work/elastic-nodea.txt" 2> /dev/null; then
  show elastic
  echo "FAIL: the elastic run of two nodes did not start"
  exit 1
fi
elastic_node "$c" nodec last_call_timeout=1
status=()
for pid in "${pids[@]}"; do
  code=0
  wait "$pid" || code=$?
  status+=("$code")
done
pids=()
worlds="$(grep -ho 'world [0-9]*' "$work/elastic-nodea.log" | tr '\n' ' ')"
if [ "${status[*]}" = "0 0 0" ]; then
  # nodec joined: the agents restarted the run with three ranks.
  if ! grep -q "world 3" "$work/elastic-nodec.log"; then
    show elastic
    echo "FAIL: nodec ended well but never trained with three ranks"
    exit 1
  fi
  "$child" train sgd "$work/one3.txt" passes=12 batch=12 distributed=0 momentum=0.5 > /dev/null
  /usr/bin/python3 "$compare" "$work/elastic-nodea.txt" "$work/elastic-nodeb.txt" \
    "$work/one3.txt" "elastic (nodea, nodeb)"
  /usr/bin/python3 "$compare" "$work/elastic-nodea.txt" "$work/elastic-nodec.txt" \
    "$work/one3.txt" "elastic (nodea, nodec)"
  echo "elastic: nodec joined; nodea's rank ran with worlds of: $worlds"
elif [ "${status[0]}" = 0 ] && [ "${status[1]}" = 0 ] && [ -s "$work/elastic-nodec.log" ]; then
  # nodec was refused: it says why, and the two finished as before.
  "$child" train sgd "$work/one2.txt" passes=12 batch=8 distributed=0 momentum=0.5 > /dev/null
  /usr/bin/python3 "$compare" "$work/elastic-nodea.txt" "$work/elastic-nodeb.txt" \
    "$work/one2.txt" "elastic (nodea, nodeb)"
  echo "elastic: nodec was refused: $(grep -m1 -i 'error' "$work/elastic-nodec.log")"
else
  show elastic
  echo "FAIL: the elastic run ended with ${status[*]} (nodea, nodeb, nodec)"
  exit 1
fi
echo "PASS"
