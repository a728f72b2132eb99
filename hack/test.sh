#!/usr/bin/env bash
# hack/test.sh — what `make test` runs. Installs (cached) everything the tests
# need, starts the servers that are not already running, runs unit and
# integration tests against them, and stops what it started, even on failure
# or Ctrl-C. Servers it starts use fresh data under .run/test-deps.
#
# GO_TEST_FLAGS (default: -count=1 -timeout 60m) and TEST_PKGS (default ./...)
# narrow a run, e.g. TEST_PKGS=./test/integration/... make test
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

phase_start=$(date +%s)
phase() { # NAME: prints how long the previous phase took
	local now
	now=$(date +%s)
	log "phase '$1' took $((now - phase_start))s"
	phase_start=$now
}

"$REPO_ROOT/hack/deps.sh" install kafka cassandra etcd kube helm
# test/browser (the TypeScript SDK under node --test, the web page in
# headless Chromium) needs node, npm and chromium: installed from Debian
# when missing and possible (the tests install their npm packages).
browser_tools=()
command -v node >/dev/null && command -v npm >/dev/null || browser_tools+=(nodejs npm)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || browser_tools+=(chromium)
if ((${#browser_tools[@]})); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		log "installing ${browser_tools[*]} (apt-get) for test/browser"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y --no-install-recommends "${browser_tools[@]}" >/dev/null ||
			{ apt-get update -qq && apt-get install -y --no-install-recommends "${browser_tools[@]}" >/dev/null; } ||
			log "could not install ${browser_tools[*]}: test/browser skips (fails under CI=true)"
	else
		log "${browser_tools[*]} missing: test/browser skips (fails under CI=true); install them with apt-get"
	fi
fi
phase install
# The real node of test/realnode (issue 10): its binaries build here, cached,
# so the build is not charged to the test's timeout. Only as root (the node
# needs it; test/realnode skips otherwise).
if [[ $(id -u) == 0 && "${IMC_REALNODE:-}" != 0 ]]; then
	"$REPO_ROOT/hack/cluster.sh" install
	phase install-cluster
fi

started=()
sampler=""
cleanup() {
	local rc=$?
	if [[ -n "$sampler" ]]; then
		kill "$sampler" 2>/dev/null || true
		wait "$sampler" 2>/dev/null || true
		log "peak RSS of the dependency stack (kafka+cassandra+etcd): $(cat "$REPO_ROOT/.run/test-peak-rss" 2>/dev/null || echo '?') MiB"
	fi
	if ((${#started[@]})); then
		IMC_RUN_DIR="$REPO_ROOT/.run/test-deps" "$REPO_ROOT/hack/deps.sh" stop "${started[@]}" || true
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for c in kafka cassandra etcd; do
	port_var="IMC_${c^^}_PORT"
	if port_open "${!port_var}"; then
		log "$c already listens on ${!port_var}: reusing it, will not stop it"
	else
		started+=("$c")
	fi
done
if ((${#started[@]})); then
	IMC_RUN_DIR="$REPO_ROOT/.run/test-deps" IMC_FRESH=1 "$REPO_ROOT/hack/deps.sh" start "${started[@]}"
fi
phase start-servers

# Samples the servers' summed RSS every 2 s; the peak is printed on exit.
sample_rss() {
	local peak=0 sum p c dir
	while true; do
		sum=0
		for c in kafka cassandra etcd; do
			for dir in "$REPO_ROOT/.run/test-deps" "$IMC_RUN_DIR"; do
				p="$(IMC_RUN_DIR=$dir pid_of "$c")" || continue
				sum=$((sum + $(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
				break
			done
		done
		((sum > peak)) && peak=$sum && echo $((peak / 1024)) >"$REPO_ROOT/.run/test-peak-rss"
		sleep 2
	done
}
sample_rss &
sampler=$!

eval "$("$REPO_ROOT/hack/deps.sh" env)"
export CI="${CI:-}"
cd "$REPO_ROOT"
log "go vet"
go vet ./...
unformatted="$(gofmt -l $(git ls-files '*.go'))"
[[ -z "$unformatted" ]] || die "gofmt needed on: $unformatted"
phase vet

# shellcheck disable=SC2086
go test ${GO_TEST_FLAGS:--count=1 -timeout 60m} ${TEST_PKGS:-./...}
phase tests

# A short run of every fuzz target (their seed corpora already ran above as
# tests); FUZZTIME=0 skips it, a longer one hunts: FUZZTIME=10m. The
# default is a count of executions, not a duration: when a duration runs
# out while a worker is mid-input, Go's fuzzing coordinator can fail the
# target with a bare "context deadline exceeded" and no failing input
# (golang/go#75804; it failed a clean-clone run here at load), and a count
# has no deadline to race.
if [[ "${FUZZTIME:-30000x}" != 0 && -z "${TEST_PKGS:-}" ]]; then
	while read -r pkg target; do
		log "fuzz $target ($pkg, ${FUZZTIME:-30000x})"
		go test -run='^$' -fuzz="^$target\$" -fuzztime="${FUZZTIME:-30000x}" "$pkg"
	done <<-FUZZ
		./services/message/model FuzzDecodeRecord
		./services/message/model FuzzDecodeSyncCursor
		./services/message/model FuzzDecodeUnreadCursor
		./services/message/api FuzzSendRequest
		./services/push FuzzDecodeClientFrame
		./services/auth FuzzVerify
	FUZZ
	phase fuzz
fi
