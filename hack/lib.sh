# shellcheck shell=bash
# Shared settings and helpers for hack/*.sh. Source it; do not run it.
#
# Everything is configurable by environment:
#   IMC_CACHE_DIR   downloads and builds, shared by every clone
#                   (default ${XDG_CACHE_HOME:-~/.cache}/imcluster)
#   IMC_RUN_DIR     server data, logs and pid files (default <repo>/.run/deps)
#   IMC_KAFKA_PORT (9092) IMC_KAFKA_CONTROLLER_PORT (9093)
#   IMC_CASSANDRA_PORT (9042) IMC_CASSANDRA_STORAGE_PORT (7000) IMC_CASSANDRA_JMX_PORT (7199)
#   IMC_ETCD_PORT (2379) IMC_ETCD_PEER_PORT (2380)
#   IMC_DEPS_ADDR   the address Kafka, Cassandra and etcd listen on and
#                   advertise (default 127.0.0.1). Pods on a real node cannot
#                   reach the host's loopback: test/realnode starts private
#                   servers with the node's IP here (hack/cluster.sh env).
#   IMC_CASSANDRA_UNSAFE_SYSTEM (true: faster DDL, but schema changes not yet
#                   flushed are lost if Cassandra is killed; false for tests
#                   that SIGKILL a Cassandra of their own)
#   IMC_CASSANDRA_COMMITLOG_SYNC (periodic: a killed Cassandra loses up to
#                   10 s of acknowledged writes; batch: acks only synced writes)

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMC_CACHE_DIR="${IMC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imcluster}"
IMC_RUN_DIR="${IMC_RUN_DIR:-$REPO_ROOT/.run/deps}"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$REPO_ROOT/hack/kafka/pom.xml")"
CASSANDRA_VERSION="$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$REPO_ROOT/hack/cassandra/pom.xml")"
ETCD_VERSION="v3.6.16"
K8S_VERSION="v1.37.2"
HELM_VERSION="v3.22.0"

IMC_KAFKA_PORT="${IMC_KAFKA_PORT:-9092}"
IMC_KAFKA_CONTROLLER_PORT="${IMC_KAFKA_CONTROLLER_PORT:-9093}"
IMC_CASSANDRA_PORT="${IMC_CASSANDRA_PORT:-9042}"
IMC_CASSANDRA_STORAGE_PORT="${IMC_CASSANDRA_STORAGE_PORT:-7000}"
IMC_CASSANDRA_JMX_PORT="${IMC_CASSANDRA_JMX_PORT:-7199}"
IMC_ETCD_PORT="${IMC_ETCD_PORT:-2379}"
IMC_ETCD_PEER_PORT="${IMC_ETCD_PEER_PORT:-2380}"
IMC_DEPS_ADDR="${IMC_DEPS_ADDR:-127.0.0.1}"

KAFKA_HOME="$IMC_CACHE_DIR/kafka-$KAFKA_VERSION"
CASSANDRA_HOME="$IMC_CACHE_DIR/cassandra-$CASSANDRA_VERSION"
ETCD_BIN="$IMC_CACHE_DIR/etcd-$ETCD_VERSION/etcd"
K8S_DIR="$IMC_CACHE_DIR/k8s-$K8S_VERSION"
ENVTEST_DIR="$IMC_CACHE_DIR/envtest-$K8S_VERSION"
HELM_BIN="$IMC_CACHE_DIR/helm-$HELM_VERSION/helm"
DEPCHECK_BIN="$IMC_CACHE_DIR/bin/depcheck"

log() { printf '%s [deps] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# java17 prints the path of a Java 17 'java': Cassandra 5.0 refuses newer ones.
java17() {
	local j
	for j in "${JAVA_HOME:-}/bin/java" /usr/lib/jvm/java-17-openjdk-amd64/bin/java \
		/usr/lib/jvm/java-17-openjdk-arm64/bin/java "$(command -v java || true)"; do
		[[ -x "$j" ]] || continue
		if "$j" -version 2>&1 | head -1 | grep -q '"17\.'; then
			echo "$j"
			return 0
		fi
	done
	die "Java 17 not found (install openjdk-17-jdk-headless or set JAVA_HOME)"
}

# with_lock NAME CMD...: runs CMD under an exclusive lock in the cache, so two
# clones (or two terminals) never build the same thing at once.
with_lock() {
	local name=$1
	shift
	mkdir -p "$IMC_CACHE_DIR/locks"
	(
		flock -w 1800 9 || die "timed out waiting for lock $name"
		"$@"
	) 9>"$IMC_CACHE_DIR/locks/$name.lock"
}

# port_open PORT [HOST]: true when something listens on HOST:PORT
# (default $IMC_DEPS_ADDR, 127.0.0.1 unless set).
port_open() { (exec 3<>"/dev/tcp/${2:-$IMC_DEPS_ADDR}/$1") 2>/dev/null; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# pid_of COMPONENT: the pid recorded at start, if that process still lives.
pid_of() {
	local f="$IMC_RUN_DIR/$1/pid" p
	[[ -f "$f" ]] || return 1
	p="$(cat "$f")"
	pid_alive "$p" || return 1
	echo "$p"
}

# wait_port_free PORT SECONDS
wait_port_free() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		port_open "$1" || return 0
		sleep 0.1
	done
	return 1
}
