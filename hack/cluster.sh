#!/usr/bin/env bash
# hack/cluster.sh ACTION — a real local Kubernetes cluster for tests and
# humans: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# one real node (kubelet, containerd, runc, kube-proxy in iptables mode,
# bridge CNI) with CoreDNS, all v1.37.2 built from the Go module proxy
# (cached under $IMC_CACHE_DIR) plus Debian packages. No Docker, no systemd.
# Facts and pitfalls: ../shared/REAL-NODE.md and hack/README.md.
#
#   install       build/fetch every piece into the cache (and apt-get what is missing)
#   up            start it all and wait: Node Ready, CoreDNS Ready (~20 s warm)
#   load ARCHIVE  import an image archive (docker-archive or OCI) into the node
#   down          stop every process by its recorded pid and remove what the
#                 node left outside its directory: iptables chains (KUBE-*,
#                 CNI-*, IMC-*, v4 and v6), the bridge, mounts, network namespaces,
#                 cgroups, /var/log links; safe after a killed run
#   status        one line per process
#   env           export lines: KUBECONFIG, IMC_NODE_IP, IMC_KUBECTL, IMC_HELM
#
# Needs root. State (certificates, logs, pids, data): $IMC_CLUSTER_DIR
# (default <repo>/.run/cluster). One cluster per machine (the bridge and the
# iptables chains are the host's).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/hack/deps_install.sh"
source "$REPO_ROOT/hack/cluster_install.sh"
source "$REPO_ROOT/hack/cluster_config.sh"

CL_DIR="${IMC_CLUSTER_DIR:-$REPO_ROOT/.run/cluster}"
CL_SOCK="$CL_DIR/containerd/containerd.sock"
CL_BRIDGE="${IMC_CLUSTER_BRIDGE:-imc0}"
CL_POD_CIDR="${IMC_CLUSTER_POD_CIDR:-10.244.0.0/24}"
CL_POD_GW="${CL_POD_CIDR%.*}.1"
CL_SERVICE_CIDR="10.96.0.0/16"
CL_DNS_IP="10.96.0.10"
CL_APISERVER_PORT="${IMC_CLUSTER_APISERVER_PORT:-16443}"
CL_ETCD_PORT="${IMC_CLUSTER_ETCD_PORT:-23790}"
CL_ETCD_PEER_PORT="${IMC_CLUSTER_ETCD_PEER_PORT:-23800}"
CL_KUBELET_PORT=10250
CL_KUBELET_HEALTHZ_PORT=10248
CL_PROXY_HEALTHZ_PORT=10256
CL_PROXY_METRICS_PORT=10249
CNI_BIN_DIR=/usr/lib/cni
PAUSE_IMAGE="localhost/imcluster/pause:1"
COREDNS_IMAGE="localhost/imcluster/coredns:$COREDNS_VERSION"
KUBECTL="$K8S_DIR/kubectl"
NODE_NAME="$(hostname)"
NODE_IP="${IMC_NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}"

# Start order; down stops in reverse.
CL_PROCS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

kc() { "$KUBECTL" --kubeconfig "$CL_DIR/admin.kubeconfig" "$@"; }

cl_pid() { # NAME: the recorded pid if alive
	local f="$CL_DIR/$1.pid" p
	[[ -f "$f" ]] || return 1
	p="$(cat "$f")"
	pid_alive "$p" || return 1
	echo "$p"
}

cl_launch() { # NAME CMD...: detached in its own session, pid recorded
	local name=$1
	shift
	mkdir -p "$CL_DIR/logs"
	setsid "$@" >>"$CL_DIR/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$CL_DIR/$name.pid"
}

# await SECONDS WHAT CMD...: CMD until it succeeds, or fail with WHAT.
await() {
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if (($(date +%s) >= deadline)); then
			log "timed out after ${secs}s waiting for $what"
			return 1
		fi
		sleep 0.5
	done
}

install() {
	[[ $(id -u) == 0 ]] || die "hack/cluster.sh needs root (containerd, iptables, mounts)"
	install_debs
	install_cluster_bins
	install_helm
}

up() {
	local t0 t
	t0=$(date +%s)
	install
	[[ -n "$NODE_IP" ]] || die "no node IP (set IMC_NODE_IP)"
	if cl_pid kube-apiserver >/dev/null || cl_pid kubelet >/dev/null; then
		die "a cluster is already running from $CL_DIR (hack/cluster.sh down first)"
	fi
	# One cluster per machine: the bridge, the node ports and the iptables
	# chains are the host's.
	if port_open "$CL_APISERVER_PORT" "$NODE_IP" || port_open "$CL_KUBELET_PORT" 127.0.0.1; then
		die "another cluster (or something else) listens on $NODE_IP:$CL_APISERVER_PORT or :$CL_KUBELET_PORT; stop it first"
	fi
	# Whatever a killed run left behind goes first.
	down_quiet
	# A failed or interrupted bring-up leaves nothing running either.
	trap 'rc=$?; if ((rc)); then log "up failed or was interrupted: cleaning up"; down_quiet; fi' EXIT
	trap 'exit 130' INT TERM
	rm -rf "$CL_DIR"
	mkdir -p "$CL_DIR/logs"
	sysctl -n net.ipv4.ip_forward >"$CL_DIR/ip_forward.before"
	sysctl -qw net.ipv4.ip_forward=1
	[[ -d /var/lib/kubelet ]] && touch "$CL_DIR/var-lib-kubelet.existed"
	pki
	kubeconfig admin admin
	kubeconfig kubelet kubelet
	kubeconfig kube-proxy kube-proxy
	kubeconfig controller-manager controller-manager
	kubeconfig scheduler scheduler
	log "control plane: etcd on 127.0.0.1:$CL_ETCD_PORT, kube-apiserver on $NODE_IP:$CL_APISERVER_PORT"
	cl_launch etcd "$ETCD_BIN" --name cluster --data-dir "$CL_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$CL_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$CL_ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$CL_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$CL_ETCD_PEER_PORT" \
		--initial-cluster "cluster=http://127.0.0.1:$CL_ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
	local p="$CL_DIR/pki"
	cl_launch kube-apiserver "$K8S_DIR/kube-apiserver" --etcd-servers "http://127.0.0.1:$CL_ETCD_PORT" \
		--bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port "$CL_APISERVER_PORT" \
		--service-cluster-ip-range "$CL_SERVICE_CIDR" --allow-privileged=true \
		--authorization-mode Node,RBAC --client-ca-file "$p/ca.crt" \
		--tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
		--kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" \
		--kubelet-preferred-address-types InternalIP,Hostname \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-node-port-range 30000-32767 --v 1
	await 90 "kube-apiserver /readyz" kc get --raw /readyz || fail_up kube-apiserver
	cl_launch kube-controller-manager "$K8S_DIR/kube-controller-manager" \
		--kubeconfig "$CL_DIR/controller-manager.kubeconfig" --authentication-kubeconfig "$CL_DIR/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$CL_DIR/controller-manager.kubeconfig" \
		--service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
		--cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
		--use-service-account-credentials=true --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
		--service-cluster-ip-range "$CL_SERVICE_CIDR" --v 1
	cl_launch kube-scheduler "$K8S_DIR/kube-scheduler" --kubeconfig "$CL_DIR/scheduler.kubeconfig" \
		--authentication-kubeconfig "$CL_DIR/scheduler.kubeconfig" --authorization-kubeconfig "$CL_DIR/scheduler.kubeconfig" \
		--leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --v 1
	t=$(date +%s)
	log "control plane ready in $((t - t0))s; node: containerd, kubelet, kube-proxy"

	containerd_config
	cl_launch containerd containerd --config "$CL_DIR/containerd/config.toml"
	await 30 "containerd" ctr --address "$CL_SOCK" version || fail_up containerd
	node_images
	kubelet_config
	mkdir -p "$CL_DIR/kubelet-root" "$CL_DIR/kubelet-certs" "$CL_DIR/pod-logs"
	cl_launch kubelet "$K8S_DIR/kubelet" --config "$CL_DIR/kubelet/config.yaml" \
		--kubeconfig "$CL_DIR/kubelet.kubeconfig" --root-dir "$CL_DIR/kubelet-root" \
		--cert-dir "$CL_DIR/kubelet-certs" --node-ip "$NODE_IP" --v 1
	kube_proxy_config
	guard_service_cidr
	cl_launch kube-proxy "$K8S_DIR/kube-proxy" --config "$CL_DIR/kube-proxy.yaml" --v 1
	await 90 "Node $NODE_NAME" kc get node "$NODE_NAME" || fail_up kubelet
	kc wait --for=condition=Ready "node/$NODE_NAME" --timeout 90s >/dev/null || fail_up kubelet
	log "node $NODE_NAME Ready after $(($(date +%s) - t0))s; CoreDNS"
	coredns_manifest | kc apply -f - >/dev/null || fail_up coredns
	kc -n kube-system rollout status deploy/coredns --timeout 120s >/dev/null || fail_up coredns
	log "cluster up in $(($(date +%s) - t0))s; KUBECONFIG=$CL_DIR/admin.kubeconfig"
	trap - EXIT INT TERM
}

# guard_service_cidr: a connection to the service CIDR that kube-proxy did
# not DNAT is refused here. kube-proxy keeps the "has no endpoints" REJECT
# in the filter table and the DNAT in the nat table; a SYN that matches
# neither (most likely one sent while an endpoint change is half applied)
# leaves by the default route. On a real node it goes nowhere, but this
# sandbox's gateway answers every unrouted HTTP request with an empty 404,
# and a keep-alive client then stays on that connection (seen once in CI:
# 90 s of 404s from the message ClusterIP).
guard_service_cidr() {
	iptables -w 5 -N IMC-UNPROXIED 2>/dev/null || iptables -w 5 -F IMC-UNPROXIED
	iptables -w 5 -A IMC-UNPROXIED -d "$CL_SERVICE_CIDR" -m conntrack ! --ctstate DNAT \
		-m comment --comment "imcluster: service IP not proxied" -j REJECT --reject-with icmp-port-unreachable
	local chain
	for chain in OUTPUT FORWARD; do
		iptables -w 5 -C "$chain" -j IMC-UNPROXIED 2>/dev/null || iptables -w 5 -I "$chain" -j IMC-UNPROXIED
	done
}

fail_up() { # COMPONENT: log tail, then fail (the caller's trap or down cleans up)
	log "last lines of $CL_DIR/logs/$1.log:"
	tail -n 30 "$CL_DIR/logs/$1.log" >&2 2>/dev/null || true
	[[ $1 == coredns ]] && kc -n kube-system get pods -o wide >&2 2>/dev/null && kc -n kube-system describe pods >&2 2>/dev/null | tail -30
	die "$1 did not come up"
}

# node_images: the pause and CoreDNS images (FROM scratch, built here),
# imported into containerd's k8s.io namespace.
node_images() {
	local ctx="$CL_DIR/images" name
	mkdir -p "$ctx/pause" "$ctx/coredns"
	cp "$PAUSE_BIN" "$ctx/pause/pause"
	printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/pause/Containerfile"
	cp "$COREDNS_BIN" "$ctx/coredns/coredns"
	printf 'FROM scratch\nCOPY coredns /coredns\nENTRYPOINT ["/coredns"]\n' >"$ctx/coredns/Containerfile"
	for name in pause coredns; do
		local ref=$PAUSE_IMAGE
		[[ $name == coredns ]] && ref=$COREDNS_IMAGE
		podman build -q -t "$ref" -f "$ctx/$name/Containerfile" "$ctx/$name" >/dev/null || die "building the $name image failed"
		podman save -q --format docker-archive -o "$ctx/$name.tar" "$ref" || die "saving the $name image failed"
		load "$ctx/$name.tar"
	done
}

load() { # ARCHIVE
	[[ -f "${1:-}" ]] || die "load: no archive ${1:-}"
	ctr --address "$CL_SOCK" -n k8s.io images import --no-unpack=false "$1" >/dev/null ||
		ctr --address "$CL_SOCK" -n k8s.io images import "$1" >/dev/null || die "ctr images import $1 failed"
}

down() {
	local t0
	t0=$(date +%s)
	down_quiet
	log "cluster down in $(($(date +%s) - t0))s"
}

down_quiet() {
	local i n pids=()
	# Stop the kubelet and kube-proxy first, then every container (tasks
	# killed through containerd, their shims with them), then the rest.
	for n in kubelet kube-proxy; do stop_proc "$n"; done
	if cl_pid containerd >/dev/null; then
		for i in $(ctr --address "$CL_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr --address "$CL_SOCK" -n k8s.io tasks kill -s SIGKILL "$i" >/dev/null 2>&1 || true
		done
		for i in $(ctr --address "$CL_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr --address "$CL_SOCK" -n k8s.io tasks rm -f "$i" >/dev/null 2>&1 || true
		done
	fi
	for ((i = ${#CL_PROCS[@]} - 1; i >= 0; i--)); do stop_proc "${CL_PROCS[i]}"; done
	# Shims outlive containerd: those serving our socket, by pid.
	for i in /proc/[0-9]*; do
		grep -qsF -- "$CL_SOCK" "$i/cmdline" && pids+=("${i#/proc/}")
	done
	((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
	# Mounts under our directory (deepest first), and network namespaces
	# whose files our containerd created.
	if [[ -d "$CL_DIR" ]]; then
		awk -v d="$CL_DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
	fi
	if [[ -d /var/run/netns ]]; then
		for i in /var/run/netns/cni-*; do
			[[ -e "$i" ]] || continue
			umount -l "$i" 2>/dev/null || true
			rm -f "$i"
		done
		rmdir /var/run/netns 2>/dev/null || true
	fi
	iptables_clean iptables
	iptables_clean ip6tables
	ip link del "$CL_BRIDGE" 2>/dev/null || true
	# cgroups the kubelet and containerd made, deepest first.
	find /sys/fs/cgroup -depth -type d -name 'kubepods*' 2>/dev/null | while read -r d; do
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	# Outside our directory: the kubelet's device-plugins folder and the
	# /var/log/containers links to our pod logs.
	if [[ -d /var/lib/kubelet && ! -f "$CL_DIR/var-lib-kubelet.existed" ]]; then
		rm -rf /var/lib/kubelet/device-plugins
		rmdir /var/lib/kubelet 2>/dev/null || true
	fi
	if [[ -d /var/log/containers ]]; then
		find /var/log/containers -maxdepth 1 -type l -lname "$CL_DIR/*" -delete 2>/dev/null || true
		rmdir /var/log/containers 2>/dev/null || true
	fi
	rm -rf /var/lib/cni/results/imcluster-* 2>/dev/null || true
	[[ -f "$CL_DIR/ip_forward.before" ]] && sysctl -qw "net.ipv4.ip_forward=$(cat "$CL_DIR/ip_forward.before")"
	rm -f "$CL_DIR/ip_forward.before"
	return 0
}

stop_proc() { # NAME: TERM, then KILL after 15 s, by recorded pid (and its session)
	local pid i
	pid="$(cl_pid "$1")" || { rm -f "$CL_DIR/$1.pid"; return 0; }
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		pid_alive "$pid" || break
		sleep 0.1
	done
	if pid_alive "$pid"; then
		log "$1 (pid $pid) ignored SIGTERM for 15s; killing"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$CL_DIR/$1.pid"
}

# iptables_clean CMD: drop every KUBE-*, CNI-* and IMC-* chain and every
# rule that jumps to one, table by table (the rest of each table is
# restored as it was).
iptables_clean() {
	local cmd=$1 t dump
	command -v "$cmd" >/dev/null || return 0
	for t in nat filter mangle raw; do
		dump="$("$cmd-save" -t "$t" 2>/dev/null)" || continue
		grep -qE '(KUBE|CNI|IMC)-' <<<"$dump" || continue
		grep -vE '^:(KUBE|CNI|IMC)-|-A (KUBE|CNI|IMC)-|-[jg] (KUBE|CNI|IMC)-' <<<"$dump" | "$cmd-restore" -w 5 ||
			log "warning: $cmd-restore of table $t failed"
	done
}

status() {
	local n
	for n in "${CL_PROCS[@]}"; do
		if cl_pid "$n" >/dev/null; then echo "$n: running, pid $(cl_pid "$n")"; else echo "$n: stopped"; fi
	done
}

print_env() {
	cat <<EOC
export KUBECONFIG=$CL_DIR/admin.kubeconfig
export IMC_NODE_IP=$NODE_IP
export IMC_KUBECTL=$KUBECTL
export IMC_HELM=$HELM_BIN
EOC
}

main() {
	local action=${1:-}
	case $action in
	install) install ;;
	up) up ;;
	down) down ;;
	load) load "${2:-}" ;;
	status) status ;;
	env) print_env ;;
	*)
		sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 2
		;;
	esac
}

main "$@"
