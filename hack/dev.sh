#!/usr/bin/env bash
# hack/dev.sh ACTION — the whole IM cluster as ordinary local processes.
#
#   start   build, bootstrap (Kafka topics + Cassandra schema), (re)start one
#           message and two push processes, show alice and bob chatting
#   stop    stop the processes start started (not the dependencies)
#   status  one line per process
#   demo    run the demo again against running processes
#
# Needs the dependency stack (make dev runs `hack/deps.sh start kafka
# cassandra etcd` first). Logs, keys and pid files live in .run/dev/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${IMC_DEV_DIR:-$ROOT/.run/dev}"
BIN="$ROOT/bin"
API=http://127.0.0.1:8080
PUSH1=ws://127.0.0.1:8081/
PUSH2=ws://127.0.0.1:8082/
WEB=http://127.0.0.1:8090/
PROCS=(message-1 push-1 push-2 web-1)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
step() { printf '    %s\n' "$*"; }
die() {
	printf 'dev.sh: %s\n' "$*" >&2
	exit 1
}

common_env() {
	export IM_ETCD_ENDPOINTS=127.0.0.1:${IMC_ETCD_PORT:-2379} IM_ETCD_PREFIX=/imcluster/dev
	export IM_KAFKA_BROKERS=127.0.0.1:${IMC_KAFKA_PORT:-9092} IM_KAFKA_TOPIC=im.dev.messages IM_KAFKA_DLQ_TOPIC=im.dev.messages.dlq
	export IM_KAFKA_PARTITIONS=${IMC_DEV_PARTITIONS:-6} IM_KAFKA_REPLICATION_FACTOR=1 IM_KAFKA_GROUP=im-dev-pipeline
	export IM_CASSANDRA_HOSTS=127.0.0.1:${IMC_CASSANDRA_PORT:-9042} IM_CASSANDRA_KEYSPACE=imcluster_dev IM_CASSANDRA_REPLICATION=SimpleStrategy:1
	export IM_AUTH_USER_KEY_FILE="$RUN/keys/user.key" IM_AUTH_SERVICE_KEY_FILE="$RUN/keys/service.key"
	export IM_AUTH_INTERNAL_KEY_FILE="$RUN/keys/internal.key"
	export IM_PRESENCE_LEASE_TTL=5s IM_SHUTDOWN_GRACE=6s
}

keys() {
	mkdir -p "$RUN/keys"
	chmod 700 "$RUN/keys"
	local k
	for k in user service internal; do
		[[ -s "$RUN/keys/$k.key" ]] || head -c 48 /dev/urandom | base64 | tr -d '\n/+=' >"$RUN/keys/$k.key"
	done
}

pid_of() {
	local f="$RUN/$1.pid"
	[[ -f "$f" ]] || return 1
	local pid
	pid=$(cat "$f")
	kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

start_proc() { # name subcommand env...
	local name=$1 sub=$2
	shift 2
	if pid_of "$name" >/dev/null; then
		step "$name already running (pid $(pid_of "$name"))"
		return
	fi
	(
		export IM_NODE_ID="$name" "$@"
		exec "$BIN/imcluster" "$sub" >>"$RUN/$name.log" 2>&1
	) &
	echo $! >"$RUN/$name.pid"
	step "$name started (pid $!, log ${RUN#"$ROOT"/}/$name.log)"
}

start_web() { # imctl web: the web chat page, with dev tokens (local only)
	if pid_of web-1 >/dev/null; then
		step "web-1 already running (pid $(pid_of web-1))"
		return
	fi
	"$BIN/imctl" web --listen 127.0.0.1:8090 --api $API --push "$PUSH1,$PUSH2" --dev-tokens \
		--user-key-file "$RUN/keys/user.key" >>"$RUN/web-1.log" 2>&1 &
	echo $! >"$RUN/web-1.pid"
	step "web-1 started (pid $!, log ${RUN#"$ROOT"/}/web-1.log)"
}

http_ok() { # url: true when it answers 200 (curl, or bash's /dev/tcp without it)
	if command -v curl >/dev/null; then
		curl -fsS -o /dev/null "$1" 2>/dev/null
		return
	fi
	local hostport=${1#http://} path
	path=/${hostport#*/}
	hostport=${hostport%%/*}
	(
		exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
		read -r _ status _ <&3 || exit 1
		[[ "$status" == 200 ]]
	) 2>/dev/null
}

wait_ready() { # name url
	local i
	for i in $(seq 1 300); do
		if http_ok "$2"; then
			step "$1 ready"
			return
		fi
		pid_of "$1" >/dev/null || {
			tail -n 30 "$RUN/$1.log" >&2
			die "$1 exited; see $RUN/$1.log"
		}
		sleep 0.2
	done
	tail -n 30 "$RUN/$1.log" >&2
	die "$1 not ready after 60 s"
}

build() {
	say "Building bin/imcluster and bin/imctl"
	mkdir -p "$BIN"
	(cd "$ROOT" && go build -o "$BIN/imcluster" ./cmd/imcluster && go build -o "$BIN/imctl" ./cmd/imctl)
}

cmd_start() {
	mkdir -p "$RUN"
	# IMC_FRESH=1 wiped the dependencies' data: the demo devices' saved sync
	# cursors point into a log that no longer exists, so they start over.
	[[ "${IMC_FRESH:-0}" == 1 ]] && rm -rf "$RUN/cursors"
	build
	if pid_of message-1 >/dev/null || pid_of push-1 >/dev/null || pid_of push-2 >/dev/null || pid_of web-1 >/dev/null; then
		say "Restarting the running dev processes on the new binaries"
		cmd_stop
	fi
	keys
	common_env
	say "Bootstrapping Kafka topics and the Cassandra schema"
	"$BIN/imcluster" bootstrap >"$RUN/bootstrap.log" 2>&1 || {
		tail -n 30 "$RUN/bootstrap.log" >&2
		die "bootstrap failed; see $RUN/bootstrap.log"
	}
	step "done (log ${RUN#"$ROOT"/}/bootstrap.log)"
	say "Starting one message and two push processes"
	start_proc message-1 message IM_HTTP_ADDR=127.0.0.1:8080 IM_INTERNAL_ADDR=127.0.0.1:9080 IM_METRICS_ADDR=127.0.0.1:9180
	start_proc push-1 push IM_HTTP_ADDR=127.0.0.1:8081 IM_INTERNAL_ADDR=127.0.0.1:9081 IM_METRICS_ADDR=127.0.0.1:9181 IM_MESSAGE_URL=$API
	start_proc push-2 push IM_HTTP_ADDR=127.0.0.1:8082 IM_INTERNAL_ADDR=127.0.0.1:9082 IM_METRICS_ADDR=127.0.0.1:9182 IM_MESSAGE_URL=$API
	wait_ready message-1 http://127.0.0.1:9180/readyz
	wait_ready push-1 http://127.0.0.1:9181/readyz
	wait_ready push-2 http://127.0.0.1:9182/readyz
	start_web
	wait_ready web-1 ${WEB}config.json
	cmd_demo
	cat <<EOF

$(say "The cluster is running")
    message API     $API            (metrics http://127.0.0.1:9180/metrics)
    push nodes      $PUSH1  $PUSH2   (metrics :9181, :9182)
    web chat page   $WEB            (imctl web; log in as any user: dev tokens)
    logs            ${RUN#"$ROOT"/}/*.log

  Connect your own client:
    export IM_AUTH_USER_KEY_FILE=$RUN/keys/user.key IM_AUTH_SERVICE_KEY_FILE=$RUN/keys/service.key
    bin/imctl listen --as carol --device carol-laptop --push $PUSH1      # events as JSON lines
    bin/imctl send --as dave --to carol --text "hello"                     # HTTP API
    bin/imctl send --as dave --to carol --text "hi" --via-push --push $PUSH2
    bin/imctl token carol      # a user JWT for any WebSocket client:
                               #   connect to $PUSH1, first frame:
                               #   {"type":"login","token":"<jwt>","device_id":"d1","terminal":"web"}
    docs/protocol.md describes the frames and the reconnect + sync algorithm.

  Stop: make dev-down (also stops the dependencies) or hack/dev.sh stop
EOF
}

# --- demo -------------------------------------------------------------------

LISTENERS=()
stop_listeners() {
	local p
	for p in "${LISTENERS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	LISTENERS=()
}
trap stop_listeners EXIT

listen() { # user device push-url; sets LAST_PID to a listener writing $RUN/demo/<device>.jsonl
	# Like a real device, it starts from the sync cursor it saved last time.
	local f="$RUN/demo/$2.jsonl" cursor=""
	[[ -s "$RUN/cursors/$2" ]] && cursor=$(cat "$RUN/cursors/$2")
	: >"$RUN/demo/$2.err" # wait_connected waits for this session's line
	"$BIN/imctl" listen --as "$1" --device "$2" --terminal desktop --push "$3" --cursor "$cursor" >>"$f" 2>>"$RUN/demo/$2.err" &
	LAST_PID=$!
	LISTENERS+=("$LAST_PID")
}

stop_listener() { # pid device: stop it and save its cursor
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local c
	c=$(sed -n 's/^cursor: //p' "$RUN/demo/$2.err" | tail -n1)
	mkdir -p "$RUN/cursors"
	[[ -n "$c" ]] && printf '%s' "$c" >"$RUN/cursors/$2"
	return 0
}

wait_line() { # file pattern what
	local i
	for i in $(seq 1 100); do
		if grep -q -- "$2" "$1" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "timed out waiting for $3 (in $1)"
}

wait_connected() { # device
	wait_line "$RUN/demo/$1.err" "connected to" "$1 to connect"
}

seq_of() { sed -n 's/.*"seq":\([0-9]*\).*/\1/p' | head -n1; }

show() { # file pattern
	grep -- "$2" "$1" | tail -n1 | sed -e 's/^/      /' | cut -c1-160
}

cmd_demo() {
	common_env
	local demo="$RUN/demo"
	rm -rf "$demo"
	mkdir -p "$demo"
	local tag
	tag=$(date +%H%M%S)
	local alice=alice bob=bob imctl="$BIN/imctl"
	export IM_AUTH_USER_KEY_FILE IMCTL_API=$API
	say "Demo: alice on push-1, bob on push-2"
	local pa pb
	listen $alice alice-phone $PUSH1
	pa=$LAST_PID
	listen $bob bob-phone $PUSH2
	pb=$LAST_PID
	wait_connected alice-phone
	wait_connected bob-phone
	step "$(grep 'connected to' "$demo/alice-phone.err" | tail -n1)"
	step "$(grep 'connected to' "$demo/bob-phone.err" | tail -n1)"
	sleep 1 # let the routers' presence caches see the new sessions (they also sync after login)

	"$imctl" send --as $alice --to $bob --device alice-phone --text "hi bob ($tag)" >"$demo/send1.json"
	step "alice -> bob: \"hi bob ($tag)\"   $(cat "$demo/send1.json")"
	wait_line "$demo/bob-phone.jsonl" "hi bob ($tag)" "bob to receive alice's message"
	step "bob (push-2) got it by push:"
	show "$demo/bob-phone.jsonl" "hi bob ($tag)"
	"$imctl" send --as $bob --to $alice --device bob-phone --text "hey alice ($tag)" --via-push --push $PUSH2 >"$demo/send2.json"
	step "bob -> alice over his socket: \"hey alice ($tag)\"   $(cat "$demo/send2.json")"
	wait_line "$demo/alice-phone.jsonl" "hey alice ($tag)" "alice to receive bob's reply"
	step "alice (push-1) got it:"
	show "$demo/alice-phone.jsonl" "hey alice ($tag)"

	say "Demo: bob goes offline; alice sends three messages"
	stop_listener "$pb" bob-phone
	local i last=""
	for i in 1 2 3; do
		"$imctl" send --as $alice --to $bob --device alice-phone --text "offline message $i ($tag)" >"$demo/off$i.json"
		step "alice -> bob: \"offline message $i ($tag)\"   $(cat "$demo/off$i.json")"
	done
	last=$(seq_of <"$demo/off3.json")
	say "Demo: bob logs in again and pulls what he missed"
	for i in $(seq 1 100); do # the send answered once the log had it; wait until it is stored
		"$imctl" unread --as $bob >"$demo/unread.json"
		grep -q "offline message 3 ($tag)" "$demo/unread.json" && break
		sleep 0.1
	done
	step "unread pull (GET /v1/unread): $(grep -o 'offline message [0-9] ('"$tag"')' "$demo/unread.json" | tr '\n' ',' | sed 's/,$//')"
	listen $bob bob-phone $PUSH1
	pb=$LAST_PID
	wait_connected bob-phone
	for i in 1 2 3; do
		wait_line "$demo/bob-phone.jsonl" "offline message $i ($tag)" "bob to sync message $i"
	done
	step "$(grep 'connected to' "$demo/bob-phone.err" | tail -n1) — and synced from his saved cursor:"
	grep -- "offline message [0-9] ($tag)" "$demo/bob-phone.jsonl" | sed -e 's/^/      /' | cut -c1-160

	say "Demo: bob reads up to seq $last; alice gets a read receipt"
	"$imctl" read --as $bob --with $alice --device bob-phone --seq "$last" | sed -e 's/^/    /'
	wait_line "$demo/alice-phone.jsonl" '"kind":"read".*"ref_seq":'"$last"',' "alice to get the read receipt"
	show "$demo/alice-phone.jsonl" '"kind":"read".*"ref_seq":'"$last"','

	say "Demo: alice recalls \"offline message 3\" (seq $last); both sides see the recall"
	"$imctl" recall --as $alice --with $bob --device alice-phone --seq "$last" | sed -e 's/^/    /'
	wait_line "$demo/bob-phone.jsonl" '"kind":"recall".*"ref_seq":'"$last"',' "bob to see the recall"
	show "$demo/bob-phone.jsonl" '"kind":"recall".*"ref_seq":'"$last"','
	step "history now (alice's view, newest first):"
	"$imctl" history --as $alice --with $bob --limit 5 | sed -e 's/^/      /'
	stop_listener "$pb" bob-phone
	demo_group "$tag"
	stop_listener "$pa" alice-phone
	stop_listeners
	say "Demo done (listener output in ${demo#"$ROOT"/}/)"
}

# demo_group: a group of three across both push nodes — alice (push-1,
# listening), bob (push-2), carol offline until the end, who pulls what she
# missed on login. Runs inside cmd_demo (its variables and listeners).
demo_group() {
	local tag=$1 grp="team-$1" demo="$RUN/demo" imctl="$BIN/imctl" pb pc i
	say "Demo: a group — alice creates $grp with bob and carol (carol is offline)"
	listen bob bob-phone $PUSH2
	pb=$LAST_PID
	wait_connected bob-phone
	step "$(grep 'connected to' "$demo/bob-phone.err" | tail -n1)"
	"$imctl" group create --as alice --id "$grp" --name "Team $tag" --members bob,carol >"$demo/group.json"
	step "created: $(cut -c1-150 "$demo/group.json")"
	wait_line "$demo/bob-phone.jsonl" '"kind":"group".*"op":"created"' "bob to see the group created"
	"$imctl" send --as alice --group "$grp" --device alice-phone --text "hello team ($tag)" --mention carol >"$demo/g1.json"
	step "alice -> $grp: \"hello team ($tag)\" @carol   $(cat "$demo/g1.json")"
	wait_line "$demo/bob-phone.jsonl" "hello team ($tag)" "bob to receive alice's group message"
	step "bob (push-2) got it by push:"
	show "$demo/bob-phone.jsonl" "hello team ($tag)"
	"$imctl" send --as bob --group "$grp" --device bob-laptop --text "hi all ($tag)" --via-push --push $PUSH2 >"$demo/g2.json"
	step "bob -> $grp from his laptop's socket: \"hi all ($tag)\"   $(cat "$demo/g2.json")"
	wait_line "$demo/alice-phone.jsonl" "hi all ($tag)" "alice to receive bob's group message"
	step "alice (push-1) got it:"
	show "$demo/alice-phone.jsonl" "hi all ($tag)"
	say "Demo: carol logs in; she pulls what she missed, then syncs it"
	for i in $(seq 1 100); do
		"$imctl" unread --as carol >"$demo/carol-unread.json"
		grep -q "hi all ($tag)" "$demo/carol-unread.json" && break
		sleep 0.1
	done
	step "carol's unread pull: $(grep -o 'hello team ('"$tag"')[^}]*mentions":\[[^]]*\]\|hi all ('"$tag"')' "$demo/carol-unread.json" | tr '\n' ',' | sed 's/,$//')"
	listen carol carol-phone $PUSH1
	pc=$LAST_PID
	wait_connected carol-phone
	wait_line "$demo/carol-phone.jsonl" "hi all ($tag)" "carol to sync the group"
	step "$(grep 'connected to' "$demo/carol-phone.err" | tail -n1) — and synced:"
	grep -- '"conv_id":"g:'"$grp"'"' "$demo/carol-phone.jsonl" | sed -e 's/^/      /' | cut -c1-160
	step "the group's history (carol's view, newest first):"
	"$imctl" history --as carol --group "$grp" --limit 5 | sed -e 's/^/      /'
	stop_listener "$pb" bob-phone
	stop_listener "$pc" carol-phone
}

cmd_stop() {
	local n pid
	for n in web-1 push-1 push-2 message-1; do
		if pid=$(pid_of "$n"); then
			kill -TERM "$pid" 2>/dev/null || true
			step "$n: SIGTERM sent (pid $pid)"
		fi
	done
	for n in web-1 push-1 push-2 message-1; do
		if pid=$(pid_of "$n"); then
			local i
			for i in $(seq 1 150); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
		fi
		rm -f "$RUN/$n.pid"
	done
	step "stopped"
}

cmd_status() {
	local n pid
	for n in "${PROCS[@]}"; do
		if pid=$(pid_of "$n"); then
			echo "$n: running, pid $pid, log $RUN/$n.log"
		else
			echo "$n: stopped"
		fi
	done
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
demo) cmd_demo ;;
*) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' && exit 2 ;;
esac
