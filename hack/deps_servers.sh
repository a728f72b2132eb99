# shellcheck shell=bash
# Server lifecycle for hack/deps.sh: start, wait, stop and status of Kafka,
# Cassandra and etcd. Each server runs in its own session (setsid) so stop can
# take its whole process group; data, config, log and pid live in
# $IMC_RUN_DIR/<component>/. IMC_FRESH=1 wipes a server's data before start.

server_port() {
	case $1 in
	kafka) echo "$IMC_KAFKA_PORT" ;;
	cassandra) echo "$IMC_CASSANDRA_PORT" ;;
	etcd) echo "$IMC_ETCD_PORT" ;;
	esac
}

# ready_timeout COMPONENT: seconds. Kafka's restart after a kill -9 (log
# recovery, the old broker registration's session) took 57-90 s at load
# 20-40 here (test/fault), so it gets Cassandra's bound.
ready_timeout() {
	case $1 in
	kafka) echo 180 ;;
	cassandra) echo 180 ;;
	etcd) echo 30 ;;
	esac
}

# launch COMPONENT CMD...: runs CMD detached, output to the component's log.
launch() {
	local dir="$IMC_RUN_DIR/$1"
	shift
	setsid "$@" >>"$dir/server.log" 2>&1 </dev/null &
	echo $! >"$dir/pid"
	date +%s.%N >"$dir/started_at"
}

# server_alive PID: the process lives and is not on its way out. After a
# kill -9 a big JVM takes a while to exit (SIGKILL pending, still R or D
# while its memory is unmapped), then stays a zombie until its parent (init
# here) reaps it; kill -0 succeeds all that time, so `start` right after a
# kill -9 took it for running and did nothing (issue 11).
server_alive() {
	local p=$1 st pnd
	pid_alive "$p" || return 1
	st="$(awk '/^State:/{print $2}' "/proc/$p/status" 2>/dev/null)"
	[[ -z $st || $st == Z || $st == X ]] && return 1
	for pnd in $(awk '/^(ShdPnd|SigPnd):/{print $2}' "/proc/$p/status" 2>/dev/null); do
		(((16#$pnd & 0x100) != 0)) && return 1 # SIGKILL pending: exiting
	done
	return 0
}

# live_pid COMPONENT: the pid recorded at start, if that process still
# lives, is not exiting (pid_of, but a killed or zombie process is not) and
# is still ours (its command line names the component's run directory: a
# reaped server's pid may have been reused).
live_pid() {
	local p
	p="$(pid_of "$1")" || return 1
	server_alive "$p" || return 1
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$IMC_RUN_DIR/$1" || return 1
	echo "$p"
}

# prepare COMPONENT: returns 1 when it is already running (nothing to do).
# A recorded process that is exiting or a zombie (killed) is waited out:
# its listening sockets close as it exits, then the server starts again on
# the same data.
prepare() {
	local c=$1 dir="$IMC_RUN_DIR/$1" port pid
	port="$(server_port "$c")"
	if pid="$(live_pid "$c")"; then
		log "$c already running (pid $pid)"
		return 1
	fi
	if pid="$(pid_of "$c")"; then
		log "$c (pid $pid) is exiting or dead; starting it again once port $port is free"
		rm -f "$dir/pid"
		wait_port_free "$port" 60 || die "$c: port $port still in use 60s after pid $pid was killed"
	fi
	port_open "$port" && die "$c: port $port is in use by a process hack/deps.sh did not start; stop it or set IMC_${c^^}_PORT"
	[[ "${IMC_FRESH:-0}" == 1 ]] && rm -rf "$dir"
	mkdir -p "$dir"
	: >"$dir/server.log"
	return 0
}

start_kafka() {
	prepare kafka || return 0
	local dir="$IMC_RUN_DIR/kafka"
	cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$IMC_DEPS_ADDR:$IMC_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$IMC_DEPS_ADDR:$IMC_KAFKA_PORT,CONTROLLER://$IMC_DEPS_ADDR:$IMC_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$IMC_DEPS_ADDR:$IMC_KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
EOF
	cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
EOF
	local java cid
	java="$(java17)"
	if [[ ! -f "$dir/data/meta.properties" ]]; then
		# Cluster id: 16 random bytes, URL-safe base64 without padding.
		cid="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
		[[ $cid == -* ]] && cid="A${cid:1}"
		"$java" -Dlog4j2.configurationFile="file:$dir/log4j2.properties" -cp "$KAFKA_HOME/libs/*" \
			kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" >>"$dir/server.log" 2>&1 ||
			{ tail -n 30 "$dir/server.log" >&2; die "kafka storage format failed"; }
	fi
	log "starting kafka $KAFKA_VERSION on $IMC_DEPS_ADDR:$IMC_KAFKA_PORT (log: $dir/server.log)"
	launch kafka "$java" -Xms512m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="file:$dir/log4j2.properties" \
		-cp "$KAFKA_HOME/libs/*" kafka.Kafka "$dir/server.properties"
}

# cassandra_commitlog_sync: the commitlog_sync lines of cassandra.yaml.
# batch (default) acknowledges a write only once its commit-log section is
# synced (concurrent writes share one sync), so a kill -9 loses nothing
# acknowledged. periodic acknowledges writes before they are synced: a
# killed Cassandra loses up to 10 s of acknowledged writes (replay stops at
# the last sync marker; test/fault TestCassandraKillLosesNothingAcked lost
# 142 of 1,377 with it, none with batch). The cost (docs/benchmarks.md,
# "Durable local stack"): fewer raw inserts per second on this box; choose
# periodic only for throughput experiments that never kill Cassandra.
cassandra_commitlog_sync() {
	case ${IMC_CASSANDRA_COMMITLOG_SYNC:-batch} in
	periodic) printf 'commitlog_sync: periodic\ncommitlog_sync_period: 10000ms' ;;
	batch) printf 'commitlog_sync: batch' ;;
	*) die "IMC_CASSANDRA_COMMITLOG_SYNC: want periodic or batch" ;;
	esac
}

# cassandra_paxos: the Paxos implementation of lightweight transactions (the
# send path's idempotency claim is one). v2 needs fewer round trips and
# fewer system.paxos writes per transaction (see docs/benchmarks.md).
cassandra_paxos() {
	case ${IMC_CASSANDRA_PAXOS:-v1} in
	v1 | v2) printf 'paxos_variant: %s' "${IMC_CASSANDRA_PAXOS:-v1}" ;;
	*) die "IMC_CASSANDRA_PAXOS: want v1 or v2" ;;
	esac
}

# cassandra_storage: memtable and SSTable implementations. classic is
# Cassandra 5.0's default (skip-list memtables, BIG sstables); trie is what
# its cassandra_latest.yaml recommends (trie memtables, BTI sstables).
cassandra_storage() {
	case ${IMC_CASSANDRA_STORAGE:-classic} in
	classic) ;;
	trie) printf 'memtable:\n  configurations:\n    trie:\n      class_name: TrieMemtable\n    default:\n      inherits: trie\nsstable:\n  selected_format: bti' ;;
	*) die "IMC_CASSANDRA_STORAGE: want classic or trie" ;;
	esac
}

# Durability (issue 11): schema changes are flushed (no
# -Dcassandra.unsafesystem, IMC_CASSANDRA_UNSAFE_SYSTEM=true brings it back:
# faster DDL, but a kill -9 forgets keyspaces and tables created since the
# last flush, and the commit-log replay then skips their writes) and the
# commit log is synced before a write is acknowledged (above). Together a
# kill -9 of the dev or test Cassandra loses nothing acknowledged.
#
# Memory: a 2 GiB heap (IMC_CASSANDRA_HEAP) with memtable contents off the
# heap (IMC_CASSANDRA_MEMTABLE_ALLOCATION=offheap_objects). With 1 GiB and
# on-heap memtables the old generation of a long-running dev node filled with
# memtable data and young collections paused 312 and 422 ms. hack/cassandra_ab.sh
# (fresh node each, alternated twice; docs/benchmarks.md) gave 13-56 % more
# raw inserts and 23-35 % more pipeline throughput, LWTs unchanged.
#
# Request threads (IMC_CASSANDRA_REQUEST_THREADS, default 8): at most that
# many client requests run at once (native_transport_max_threads) and
# that many local mutations (concurrent_writes), instead of Cassandra's
# 128 and 32. On a 2-core machine the extra threads only take turns on
# the cores; with 8 (and 4) the bench's Cassandra used up to 20 % less CPU
# per message and send→ack p99 at 1,000 msg/s fell from 271–307 to
# 68–79 ms (docs/benchmarks.md, "Cassandra's request threads"). In batch
# commit-log mode a mutation's thread waits for the sync: keep it higher
# on a disk whose fsync is slow (here it takes 0.1 ms).
start_cassandra() {
	prepare cassandra || return 0
	local dir="$IMC_RUN_DIR/cassandra"
	mkdir -p "$dir/data"
	cat >"$dir/cassandra.yaml" <<EOF
cluster_name: imcluster-dev
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$IMC_DEPS_ADDR:$IMC_CASSANDRA_STORAGE_PORT"
listen_address: $IMC_DEPS_ADDR
rpc_address: $IMC_DEPS_ADDR
storage_port: $IMC_CASSANDRA_STORAGE_PORT
native_transport_port: $IMC_CASSANDRA_PORT
start_native_transport: true
$(cassandra_commitlog_sync)
$(cassandra_paxos)
$(cassandra_storage)
memtable_allocation_type: ${IMC_CASSANDRA_MEMTABLE_ALLOCATION:-offheap_objects}
storage_compatibility_mode: NONE
hinted_handoff_enabled: false
auto_snapshot: false
compaction_throughput: 0MiB/s
concurrent_reads: 16
concurrent_writes: ${IMC_CASSANDRA_REQUEST_THREADS:-8}
native_transport_max_threads: ${IMC_CASSANDRA_REQUEST_THREADS:-8}
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 512KiB
EOF
	cat >"$dir/logback.xml" <<'EOF'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
	local java jamm
	java="$(java17)"
	jamm="$(ls "$CASSANDRA_HOME"/libs/jamm-*.jar | head -1)"
	local opens=()
	for m in java.lang.module jdk.internal.loader jdk.internal.ref jdk.internal.reflect jdk.internal.math \
		jdk.internal.module jdk.internal.util.jar sun.nio.ch java.io java.lang.reflect java.lang java.util java.nio; do
		opens+=(--add-opens "java.base/$m=ALL-UNNAMED")
	done
	opens+=(--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED)
	for m in java.base/jdk.internal.misc java.management.rmi/com.sun.jmx.remote.internal.rmi \
		java.management/com.sun.jmx.remote.security java.rmi/sun.rmi.registry java.rmi/sun.rmi.server \
		java.sql/java.sql java.base/java.lang.ref jdk.unsupported/sun.misc; do
		opens+=(--add-exports "$m=ALL-UNNAMED")
	done
	log "starting cassandra $CASSANDRA_VERSION on $IMC_DEPS_ADDR:$IMC_CASSANDRA_PORT (log: $dir/server.log)"
	launch cassandra "$java" -Xms"${IMC_CASSANDRA_HEAP:-2g}" -Xmx"${IMC_CASSANDRA_HEAP:-2g}" -Xss256k -XX:+UseG1GC -XX:+HeapDumpOnOutOfMemoryError \
		"${opens[@]}" -javaagent:"$jamm" -Djdk.attach.allowAttachSelf=true \
		-Djava.net.preferIPv4Stack=true -Dchronicle.analytics.disable=true \
		-Dcassandra.config="file://$dir/cassandra.yaml" -Dcassandra.storagedir="$dir/data" \
		-Dcassandra-foreground=yes -Dlogback.configurationFile="$dir/logback.xml" \
		-Dcassandra.jmx.local.port="$IMC_CASSANDRA_JMX_PORT" \
		-Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.initial_token=0 \
		-Dcassandra.unsafesystem="${IMC_CASSANDRA_UNSAFE_SYSTEM:-false}" \
		-cp "$CASSANDRA_HOME/libs/*" org.apache.cassandra.service.CassandraDaemon
}

start_etcd() {
	prepare etcd || return 0
	local dir="$IMC_RUN_DIR/etcd"
	log "starting etcd $ETCD_VERSION on $IMC_DEPS_ADDR:$IMC_ETCD_PORT (log: $dir/server.log)"
	launch etcd "$ETCD_BIN" --name imc --data-dir "$dir/data" \
		--listen-client-urls "http://$IMC_DEPS_ADDR:$IMC_ETCD_PORT" \
		--advertise-client-urls "http://$IMC_DEPS_ADDR:$IMC_ETCD_PORT" \
		--listen-peer-urls "http://$IMC_DEPS_ADDR:$IMC_ETCD_PEER_PORT" \
		--initial-advertise-peer-urls "http://$IMC_DEPS_ADDR:$IMC_ETCD_PEER_PORT" \
		--initial-cluster "imc=http://$IMC_DEPS_ADDR:$IMC_ETCD_PEER_PORT" \
		--unsafe-no-fsync --log-level warn
}

wait_kafka() { wait_server kafka; }
wait_cassandra() { wait_server cassandra; }
wait_etcd() { wait_server etcd; }

# wait_server COMPONENT: ready by the server's own protocol, or fail with the
# log tail after the component's bounded timeout (the server is stopped).
wait_server() {
	local c=$1 dir="$IMC_RUN_DIR/$1" pid
	install_depcheck
	pid="$(live_pid "$c")" || { tail_log "$c"; die "$c is not running"; }
	if ! "$DEPCHECK_BIN" -q -timeout "$(ready_timeout "$c")s" "$c" "$IMC_DEPS_ADDR:$(server_port "$c")" 2>"$dir/depcheck.err" ||
		! server_alive "$pid"; then
		tail_log "$c"
		cat "$dir/depcheck.err" >&2
		stop_server "$c"
		die "$c did not become ready"
	fi
	local t0 took
	t0="$(cat "$dir/started_at" 2>/dev/null || date +%s.%N)"
	took="$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')"
	log "$c ready on $IMC_DEPS_ADDR:$(server_port "$c") (launched ${took}s ago)"
}

tail_log() {
	log "last lines of $IMC_RUN_DIR/$1/server.log:"
	tail -n 40 "$IMC_RUN_DIR/$1/server.log" >&2 || true
}

stop_server() {
	local c=$1 pid i
	pid="$(pid_of "$c")" || { rm -f "$IMC_RUN_DIR/$c/pid"; return 0; }
	log "stopping $c (pid $pid)"
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		server_alive "$pid" || break
		sleep 0.1
	done
	if server_alive "$pid"; then
		log "$c did not stop in 30s; killing"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		sleep 0.5
	fi
	rm -f "$IMC_RUN_DIR/$c/pid"
	wait_port_free "$(server_port "$c")" 10 || log "warning: port $(server_port "$c") still busy after stopping $c"
}

status_of() {
	local c=$1 pid
	case $c in
	kube) [[ -x "$ENVTEST_DIR/kube-apiserver" ]] && echo "kube: installed (KUBEBUILDER_ASSETS=$ENVTEST_DIR)" || echo "kube: not installed" ;;
	helm) [[ -x "$HELM_BIN" ]] && echo "helm: installed ($HELM_BIN)" || echo "helm: not installed" ;;
	*)
		if pid="$(live_pid "$c")"; then
			echo "$c: running, pid $pid, $IMC_DEPS_ADDR:$(server_port "$c"), rss $(($(awk '/VmRSS/{print $2}' "/proc/$pid/status") / 1024)) MiB, log $IMC_RUN_DIR/$c/server.log"
		elif port_open "$(server_port "$c")"; then
			echo "$c: port $(server_port "$c") open, but not started by hack/deps.sh"
		else
			echo "$c: stopped"
		fi
		;;
	esac
}

print_env() {
	cat <<EOF
export IM_TEST_KAFKA=$IMC_DEPS_ADDR:$IMC_KAFKA_PORT
export IM_TEST_CASSANDRA=$IMC_DEPS_ADDR:$IMC_CASSANDRA_PORT
export IM_TEST_ETCD=$IMC_DEPS_ADDR:$IMC_ETCD_PORT
export IM_KAFKA_BROKERS=$IMC_DEPS_ADDR:$IMC_KAFKA_PORT
export IM_CASSANDRA_HOSTS=$IMC_DEPS_ADDR:$IMC_CASSANDRA_PORT
export IM_ETCD_ENDPOINTS=$IMC_DEPS_ADDR:$IMC_ETCD_PORT
export KUBEBUILDER_ASSETS=$ENVTEST_DIR
export IMC_HELM=$HELM_BIN
export IMC_KUBECTL=$ENVTEST_DIR/kubectl
EOF
}
