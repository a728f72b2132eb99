# shellcheck shell=bash
# Install functions for hack/cluster.sh (the real local node): the node-side
# Kubernetes binaries, CoreDNS, the pause binary, and the Debian packages.
# Binaries are cached by version under $IMC_CACHE_DIR next to kube-apiserver
# (k8s-v1.37.2/), built once per machine and shared by every clone.
# Source after hack/lib.sh.

COREDNS_VERSION="v1.15.0"
COREDNS_BIN="$IMC_CACHE_DIR/coredns-$COREDNS_VERSION/coredns"
CLUSTER_K8S_BINS=(kube-controller-manager kube-scheduler kube-proxy kubelet)
CLUSTER_DEBS=(containerd runc containernetworking-plugins iptables conntrack socat podman openssl iproute2)

# install_debs: the Debian packages the node and the image build need, when
# any is missing (a fresh CI machine has none of them).
install_debs() {
	local missing=() p
	for p in "${CLUSTER_DEBS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	[[ $(id -u) == 0 ]] || die "missing Debian packages ${missing[*]} (run as root, or apt-get install them)"
	log "installing Debian packages: ${missing[*]}"
	with_lock apt _install_debs "${missing[@]}"
}
_install_debs() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 -qq update >/dev/null || die "apt-get update failed"
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null ||
		die "apt-get install $* failed"
}

# install_cluster_bins: kube-apiserver and kubectl (hack/deps.sh install
# kube), then the node's binaries, CoreDNS and pause.
install_cluster_bins() {
	install_kube
	local b need=0
	for b in "${CLUSTER_K8S_BINS[@]}"; do [[ -x "$K8S_DIR/$b" ]] || need=1; done
	# The same lock as kube-apiserver's build: the packages they share are
	# compiled once, not twice at the same time.
	((need)) && with_lock kube _install_cluster_k8s
	[[ -x "$COREDNS_BIN" ]] || with_lock coredns _install_coredns
	install_pause
}
_install_cluster_k8s() {
	local v=$K8S_VERSION minor ld bin t0
	minor="$(echo "$v" | cut -d. -f2)"
	ld="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld="$ld -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	mkdir -p "$K8S_DIR"
	for bin in "${CLUSTER_K8S_BINS[@]}"; do
		[[ -x "$K8S_DIR/$bin" ]] && continue
		log "building $bin $v from the Go module proxy (kubelet: ~5-8 min cold, the others ~0.5-2 min after kube-apiserver)"
		t0=$(date +%s)
		(cd "$REPO_ROOT/hack/tools/k8s" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "$ld" \
			-o "$K8S_DIR/$bin.tmp" "k8s.io/kubernetes/cmd/$bin") || die "$bin build failed"
		mv "$K8S_DIR/$bin.tmp" "$K8S_DIR/$bin"
		log "built $bin in $(($(date +%s) - t0))s"
	done
}
_install_coredns() {
	[[ -x "$COREDNS_BIN" ]] && return 0
	local t0
	t0=$(date +%s)
	log "building coredns $COREDNS_VERSION from the Go module proxy (~2.5 min cold)"
	mkdir -p "$(dirname "$COREDNS_BIN")"
	(cd "$IMC_CACHE_DIR" && GOBIN="$(dirname "$COREDNS_BIN")" CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go install -trimpath \
		-ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION") || die "coredns build failed"
	log "built coredns in $(($(date +%s) - t0))s"
}

# install_pause: the sandbox binary, rebuilt when its source changes (cheap).
PAUSE_BIN="$IMC_CACHE_DIR/bin/pause"
install_pause() {
	local sum
	sum="$(sha256sum "$REPO_ROOT/hack/tools/k8s/pause/main.go" | cut -c1-16)"
	[[ -x "$PAUSE_BIN" && -f "$PAUSE_BIN.$sum" ]] && return 0
	mkdir -p "$(dirname "$PAUSE_BIN")"
	(cd "$REPO_ROOT/hack/tools/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$PAUSE_BIN" ./pause) ||
		die "building pause failed"
	rm -f "$PAUSE_BIN".* && touch "$PAUSE_BIN.$sum"
}
