#!/usr/bin/env bash
# hack/bench_tier.sh TREE TAG MODE RATE... — the message-tier figures of
# docs/benchmarks.md: imctl bench --users 1000 against message and push
# processes built from the checkout TREE (a git worktree of the revision
# to measure), with a topic, keyspace, group and etcd prefix of their own
# (TAG), on Kafka, Cassandra and etcd servers of the bench's own
# (.run/bench/deps, ports 19092, 19042, 12379; started here if not running,
# left running for the next run; `hack/bench_tier.sh stop` stops them), so
# the server CPU counted is this run's only, whatever else the machine
# runs. The load generator and its CPU accounting (--server-pids: Kafka,
# Cassandra, etcd and this run's tier processes) come from this checkout,
# so two revisions are measured alike.
#
#   MODE steady  one message and two push processes; one bench per RATE
#   MODE group   like steady, in group mode: each RATE is SIZE:RATE, 1,000
#                users (at least SIZE) in groups of SIZE members, RATE group
#                messages/s (each delivered to SIZE-1 members); the output
#                adds the pipeline's records per batch (what the per-member
#                writes are amortised over)
#   MODE kill    two message processes (API + pipeline) and two push
#                processes; 10 s into a 30 s bench at RATE, message-2 is
#                killed with SIGKILL and started again at once (a container
#                restart): what a crash costs send→deliver
#
# IMC_BENCH_WARM=1 (steady) precedes each measured run by 20 s of the same
# rate to the same users, in the same processes: the conversations exist
# and their markers are written, as on a server that has been running;
# without it every run's 1,000 conversations are new (cold).
# IMC_BENCH_PARTITIONS sets the topic's partitions (default 6, as make dev);
# IMC_BENCH_GOMAXPROCS sets GOMAXPROCS of the message and push processes
# (unset: Go's default, the machine's or the container's CPUs).
# IMC_BENCH_ACK=1 makes the clients acknowledge every event, as the SDKs
# do by default (imctl bench --ack: the delivered receipts' cost included).
#
# Output: .run/bench/TAG-MODE-RATE.txt (and on stdout); steady and group
# runs end with the pipeline's batch sizes and stage times and with what
# the run asked of Cassandra per persisted record (requests by kind,
# statements by table: imcluster_store_* of message-1, before and after).
# Example (A/B):
#   git worktree add --detach /tmp/before 0a5220a
#   hack/bench_tier.sh /tmp/before before steady 300 500 1000
#   hack/bench_tier.sh "$PWD" after steady 300 500 1000
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export IMC_RUN_DIR=$ROOT/.run/bench/deps IMC_KAFKA_PORT=19092 IMC_KAFKA_CONTROLLER_PORT=19093
export IMC_CASSANDRA_PORT=19042 IMC_CASSANDRA_STORAGE_PORT=17000 IMC_CASSANDRA_JMX_PORT=17199 IMC_ETCD_PORT=12379 IMC_ETCD_PEER_PORT=12380
if [[ ${1:-} == stop ]]; then
	exec "$ROOT/hack/deps.sh" stop kafka cassandra etcd
fi
"$ROOT/hack/deps.sh" start kafka cassandra etcd >/dev/null
TREE=$1 TAG=$2 MODE=$3
shift 3
OUT=$ROOT/.run/bench BIN=$ROOT/.run/bench/$TAG/bin RUN=$ROOT/.run/bench/$TAG/$MODE
mkdir -p "$BIN" "$RUN/keys"
(cd "$TREE" && go build -o "$BIN/imcluster" ./cmd/imcluster)
(cd "$ROOT" && go build -o "$BIN/imctl" ./cmd/imctl)
for k in user service internal; do
	[[ -s $RUN/keys/$k.key ]] || head -c 48 /dev/urandom | base64 | tr -d '\n/+=' >"$RUN/keys/$k.key"
done
export IM_ETCD_ENDPOINTS=127.0.0.1:$IMC_ETCD_PORT IM_ETCD_PREFIX=/imcluster/bench-$TAG-$MODE
export IM_KAFKA_BROKERS=127.0.0.1:$IMC_KAFKA_PORT IM_KAFKA_TOPIC=im.bench.$TAG.$MODE IM_KAFKA_DLQ_TOPIC=im.bench.$TAG.$MODE.dlq
export IM_KAFKA_PARTITIONS=${IMC_BENCH_PARTITIONS:-6} IM_KAFKA_REPLICATION_FACTOR=1 IM_KAFKA_GROUP=im-bench-$TAG-$MODE
export IM_CASSANDRA_HOSTS=127.0.0.1:$IMC_CASSANDRA_PORT IM_CASSANDRA_KEYSPACE=imcluster_bench_${TAG}_$MODE IM_CASSANDRA_REPLICATION=SimpleStrategy:1
export IM_AUTH_USER_KEY_FILE=$RUN/keys/user.key IM_AUTH_SERVICE_KEY_FILE=$RUN/keys/service.key IM_AUTH_INTERNAL_KEY_FILE=$RUN/keys/internal.key
export IM_PRESENCE_LEASE_TTL=5s IM_SHUTDOWN_GRACE=6s
"$BIN/imcluster" bootstrap >"$RUN/bootstrap.log" 2>&1

declare -A PIDS
start() { # name subcommand env...
	local name=$1 sub=$2
	shift 2
	(
		export IM_NODE_ID=bench-$TAG-$name "$@"
		[[ -z ${IMC_BENCH_GOMAXPROCS:-} ]] || export GOMAXPROCS=$IMC_BENCH_GOMAXPROCS
		exec "$BIN/imcluster" "$sub" >>"$RUN/$name.log" 2>&1
	) &
	PIDS[$name]=$!
}
message() { # n
	start "message-$1" message IM_HTTP_ADDR=127.0.0.1:$((28079 + $1)) IM_METRICS_ADDR=127.0.0.1:$((29179 + $1))
}
cleanup() {
	kill "${PIDS[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT
message 1
[[ $MODE == kill ]] && message 2
start push-1 push IM_HTTP_ADDR=127.0.0.1:28091 IM_INTERNAL_ADDR=127.0.0.1:27091 IM_METRICS_ADDR=127.0.0.1:29191 IM_MESSAGE_URL=http://127.0.0.1:28080
start push-2 push IM_HTTP_ADDR=127.0.0.1:28092 IM_INTERNAL_ADDR=127.0.0.1:27092 IM_METRICS_ADDR=127.0.0.1:29192 IM_MESSAGE_URL=http://127.0.0.1:28080
ready=(29180 29191 29192)
[[ $MODE == kill ]] && ready+=(29181)
for p in "${ready[@]}"; do
	for _ in $(seq 300); do curl -fsS -o /dev/null "http://127.0.0.1:$p/readyz" && break; sleep 0.2; done
done

server_pids() { # the dependency servers and this run's tier processes
	local out="" n
	for n in kafka cassandra etcd; do out+="$n=$(cat "$IMC_RUN_DIR/$n/pid"),"; done
	for n in "${!PIDS[@]}"; do out+="${n%%-*}=${PIDS[$n]},"; done
	echo "${out%,}"
}
bench() { # rate duration settle [users [bench flags...]]
	"$BIN/imctl" --api http://127.0.0.1:28080 --push ws://127.0.0.1:28091/,ws://127.0.0.1:28092/ --user-key-file "$RUN/keys/user.key" \
		bench --server-pids "$(server_pids)" --users "${4:-1000}" --rate "$1" --duration "$2" --settle "$3" ${IMC_BENCH_ACK:+--ack} "${@:5}" 2>>"$RUN/bench.err"
}
batch_sizes() { # the pipeline's records and time per batch so far (message-1's metrics)
	curl -fsS http://127.0.0.1:29180/metrics | awk '
		/^imcluster_pipeline_batch_records_(sum|count) / { v[$1] = $2 }
		/^imcluster_pipeline_stage_seconds_(sum|count)\{/ { split($1, a, "\""); st[a[2] "," (($1 ~ /_sum\{/) ? "sum" : "count")] = $2 }
		/^imcluster_pipeline_index_lag_seconds_(sum|count) / { lag[$1] = $2 }
		END {
			c = v["imcluster_pipeline_batch_records_count"]
			if (c == 0) exit
			printf "# pipeline: %d batches, %.1f records per batch", c, v["imcluster_pipeline_batch_records_sum"] / c
			n = split("persist route index total", names, " ")
			for (i = 1; i <= n; i++) if (st[names[i] ",count"] > 0) printf ", %s %.0f ms", names[i], 1000 * st[names[i] ",sum"] / st[names[i] ",count"]
			if (lag["imcluster_pipeline_index_lag_seconds_count"] > 0) printf ", index lag %.0f ms", 1000 * lag["imcluster_pipeline_index_lag_seconds_sum"] / lag["imcluster_pipeline_index_lag_seconds_count"]
			print " (means since start)"
		}'
}
store_counts() { # message-1's Cassandra requests and statements and persisted records so far
	curl -fsS http://127.0.0.1:29180/metrics | grep -E '^imcluster_(store_requests_total|store_statements_total|pipeline_records_total\{result="persisted"\})' || true
}
store_delta() { # BEFORE AFTER: what the run asked of Cassandra, per persisted record
	awk 'NR == FNR { b[$1] = $2; next } { d[$1] = $2 - b[$1] }
		END {
			n = d["imcluster_pipeline_records_total{result=\"persisted\"}"]
			if (n <= 0) exit
			for (k in d) {
				if (k ~ /^imcluster_store_requests_total/) { split(k, a, "\""); req[a[2]] = d[k]; reqs += d[k] }
				if (k ~ /^imcluster_store_statements_total/ && d[k] > 0) { split(k, a, "\""); st[a[2] " " a[4]] = d[k]; if (a[2] == "write") w += d[k] }
			}
			printf "# cassandra per persisted record (%d records): %.2f requests (%.2f reads, %.2f writes, %.2f batches), %.2f statements written:", n, reqs / n, req["read"] / n, req["write"] / n, req["batch"] / n, w / n
			for (k in st) printf " %s %.2f;", k, st[k] / n
			print ""
		}' "$1" "$2"
}
counted() { # run "$@", then print the pipeline's batches and what this run asked of Cassandra
	store_counts >"$RUN/store.before"
	"$@"
	batch_sizes
	store_counts >"$RUN/store.after"
	store_delta "$RUN/store.before" "$RUN/store.after"
}
header() { echo "# $(date -u +%FT%TZ) $MODE rev=$(git -C "$TREE" rev-parse --short HEAD) $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"; }

for rate in "$@"; do
	out=$OUT/$TAG-$MODE-$rate.txt
	case $MODE in
	steady)
		id=(--run-id "s$rate-$(date +%H%M%S)")
		# IMC_BENCH_WARM=1: the same users and conversations get 20 s of
		# the same rate first, in the same processes, outside the measured
		# window (a running server's steady state: markers written, caches
		# and JIT warm); without it every run's conversations are new.
		[[ -n ${IMC_BENCH_WARM:-} ]] && bench "$rate" 20s 5s 1000 "${id[@]}" >"$RUN/warm-$rate.txt" 2>&1
		{ header; [[ -n ${IMC_BENCH_WARM:-} ]] && echo "# after a 20 s warm-up at the same rate, same users and conversations"
			counted bench "$rate" 20s 10s 1000 "${id[@]}"; echo "# loadavg after $(cut -d' ' -f1-3 /proc/loadavg)"; } >"$out" 2>&1 || true ;;
	group)
		size=${rate%%:*}
		{ header; counted bench "${rate#*:}" 20s 20s "$((size > 1000 ? size : 1000))" --group-size "$size" --run-id "g$size-$(date +%H%M%S)"
			echo "# loadavg after $(cut -d' ' -f1-3 /proc/loadavg)"; } >"$out" 2>&1 || true ;;
	kill)
		header >"$out"
		bench "$rate" 30s 60s >>"$out" 2>&1 &
		b=$!
		sleep 14 # connecting 1,000 devices takes a few seconds; then 10 s of sends
		kill -9 "${PIDS[message-2]}"
		echo "# SIGKILL message-2 at $(date -u +%T.%N)" >>"$out"
		message 2
		echo "# message-2 started again at $(date -u +%T.%N)" >>"$out"
		wait "$b" || true
		;;
	*) echo "MODE must be steady, group or kill" >&2; exit 2 ;;
	esac
	cat "$out"
done
