#!/usr/bin/env bash
# hack/cassandra_ab.sh PROFILE... — A/B Cassandra settings on this machine.
#
# Each PROFILE is a comma-separated list of hack/deps.sh knobs, e.g.
#   hack/cassandra_ab.sh IMC_CASSANDRA_HEAP=1g,IMC_CASSANDRA_MEMTABLE_ALLOCATION=heap_buffers \
#                        IMC_CASSANDRA_HEAP=2g,IMC_CASSANDRA_MEMTABLE_ALLOCATION=offheap_objects
# For each, in the order given (repeat profiles to alternate them), it starts
# a fresh private Cassandra on port 29042 (the dev/test servers are left
# alone; the running Kafka on IMC_KAFKA_PORT is used), runs the message
# bench against it (MSGBENCH_ARGS, default: raw inserts, LWT claims, sends
# and the pipeline), prints the GC pauses Cassandra logged, and stops it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ $# -gt 0 ]] || { sed -n 2,12p "$0"; exit 2; }
go build -o "$ROOT/bin/msgbench" ./services/message/bench
export IMC_CASSANDRA_PORT=29042 IMC_CASSANDRA_STORAGE_PORT=27000 IMC_CASSANDRA_JMX_PORT=27199 IMC_FRESH=1
read -r -a args <<<"${MSGBENCH_ARGS:--phases cassandra,lwt,send,pipeline -raw 10s -send 15s}"
n=0
for prof in "$@"; do
	n=$((n + 1))
	(
		IFS=, read -r -a kv <<<"$prof"
		for a in "${kv[@]}"; do export "${a?}"; done
		export IMC_RUN_DIR="${TMPDIR:-/tmp}/imc-cassandra-ab-$n"
		trap 'hack/deps.sh stop cassandra >/dev/null 2>&1; rm -rf "$IMC_RUN_DIR"' EXIT
		hack/deps.sh start cassandra >/dev/null
		pid=$(cat "$IMC_RUN_DIR/cassandra/pid")
		echo "=== $prof ($(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"
		IM_TEST_CASSANDRA=127.0.0.1:29042 IM_TEST_KAFKA="127.0.0.1:${IMC_KAFKA_PORT:-9092}" \
			"$ROOT/bin/msgbench" "${args[@]}" -pids "cassandra=$pid" 2>&1 | grep -v '^20[0-9][0-9]/'
		echo "GC pauses logged by Cassandra: $(grep -o 'GC in [0-9]*ms' "$IMC_RUN_DIR/cassandra/server.log" | tr '\n' ' ')"
	)
done
