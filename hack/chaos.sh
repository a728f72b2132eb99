#!/usr/bin/env bash
# hack/chaos.sh [FLAGS...] — what `make chaos` runs: the black-box fault
# suite of issue 11 (test/chaos). It runs on a stack of its own, never the
# shared one:
#
#   - Kafka, Cassandra and etcd of its own (hack/deps.sh with
#     IMC_RUN_DIR=.run/chaos/deps and ports 29092/29093, 29042/27000/27199,
#     22379/22380), started fresh here and stopped on exit;
#   - two message and two push processes of its own (test/chaos starts,
#     kills and restarts them; they die with it).
#
# The faults (kill -9, SIGSTOP) only ever hit those: test/chaos refuses to
# signal a dependency whose command line does not name .run/chaos/deps.
# FLAGS go to test/chaos (e.g. -scenarios msg-kill,etcd-stop -users 100
# -rate 50 for a short run; -groups 0 for 1:1 traffic only, without the
# group chats; -h lists them). CHAOS_KEEP=1 leaves the
# dependencies running (and their data) for a rerun. CHAOS_REV=HEAD builds
# the tiers from a commit instead of the working tree.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export IMC_RUN_DIR="$REPO_ROOT/.run/chaos/deps"
export IMC_KAFKA_PORT=29092 IMC_KAFKA_CONTROLLER_PORT=29093
export IMC_CASSANDRA_PORT=29042 IMC_CASSANDRA_STORAGE_PORT=27000 IMC_CASSANDRA_JMX_PORT=27199
export IMC_ETCD_PORT=22379 IMC_ETCD_PEER_PORT=22380
OUT="$REPO_ROOT/.run/chaos"
mkdir -p "$OUT/bin"

cleanup() {
	local rc=$? c p
	# A dependency left stopped (SIGSTOP) would only die after stop's 30 s.
	for c in kafka cassandra etcd; do
		p="$(pid_of "$c")" || continue
		kill -CONT -- "-$p" 2>/dev/null || kill -CONT "$p" 2>/dev/null || true
	done
	if [[ "${CHAOS_KEEP:-0}" != 1 ]]; then
		"$REPO_ROOT/hack/deps.sh" stop kafka cassandra etcd || true
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$REPO_ROOT/hack/deps.sh" install kafka cassandra etcd
# CHAOS_REV=<rev> tests the tiers of a commit (git archive) instead of the
# working tree: in a shared tree, others' work in progress stays out.
src="$REPO_ROOT"
if [[ -n "${CHAOS_REV:-}" ]]; then
	src="$OUT/src"
	rm -rf "$src" && mkdir -p "$src"
	git -C "$REPO_ROOT" archive "$CHAOS_REV" | tar -x -C "$src"
fi
log "building cmd/imcluster (from ${CHAOS_REV:-the working tree}) and test/chaos"
(cd "$src" && go build -o "$OUT/bin/imcluster" ./cmd/imcluster)
(cd "$REPO_ROOT" && go build -o "$OUT/bin/chaos" ./test/chaos)
fresh=1
[[ "${CHAOS_KEEP:-0}" == 1 ]] && fresh=0
for c in kafka cassandra etcd; do
	port_var="IMC_${c^^}_PORT"
	if port_open "${!port_var}" && ! pid_of "$c" >/dev/null; then
		die "$c: port ${!port_var} is in use by something hack/chaos.sh did not start"
	fi
done
IMC_FRESH=$fresh "$REPO_ROOT/hack/deps.sh" start kafka cassandra etcd
"$OUT/bin/chaos" -root "$REPO_ROOT" -bin "$OUT/bin/imcluster" -out "$OUT" "$@"
