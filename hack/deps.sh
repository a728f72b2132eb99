#!/usr/bin/env bash
# hack/deps.sh ACTION [COMPONENT...] — the real dependency stack, no Docker.
#
#   install  fetch/build into the cache (idempotent; warm runs take seconds)
#   start    start servers and wait until ready (no-op for a running one)
#   wait     wait until running servers are ready
#   stop     stop servers; leaves no process behind
#   status   one line per component
#   env      print export lines for the endpoints (eval "$(hack/deps.sh env)")
#
# Components: kafka cassandra etcd (servers), kube (kube-apiserver, kubectl and
# etcd laid out for envtest), helm. Default: kafka cassandra etcd for
# start/stop/status/wait, everything for install. Settings: hack/lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/hack/deps_install.sh"
source "$REPO_ROOT/hack/deps_servers.sh"

usage() {
	sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
}

main() {
	local action=${1:-}
	[[ -n "$action" ]] || usage
	shift
	local comps=("$@")
	if ((${#comps[@]} == 0)); then
		case $action in
		install) comps=(kafka cassandra etcd kube helm) ;;
		*) comps=(kafka cassandra etcd) ;;
		esac
	fi
	local c
	for c in "${comps[@]}"; do
		case $c in kafka | cassandra | etcd | kube | helm) ;; *) die "unknown component: $c" ;; esac
	done
	case $action in
	install) for c in "${comps[@]}"; do "install_$c"; done ;;
	start)
		# Start all first, then wait: the JVMs boot in parallel.
		for c in "${comps[@]}"; do is_server "$c" && { "install_$c"; "start_$c"; }; done
		for c in "${comps[@]}"; do is_server "$c" && "wait_$c"; done
		;;
	wait) for c in "${comps[@]}"; do is_server "$c" && "wait_$c"; done ;;
	stop) for c in "${comps[@]}"; do is_server "$c" && stop_server "$c"; done ;;
	status) for c in "${comps[@]}"; do status_of "$c"; done ;;
	env) print_env ;;
	*) usage ;;
	esac
}

is_server() { [[ $1 == kafka || $1 == cassandra || $1 == etcd ]]; }

main "$@"
