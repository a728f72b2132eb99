# shellcheck shell=bash
# Install functions for hack/deps.sh: each fetches or builds one component
# into $IMC_CACHE_DIR, keyed by version, and returns at once when present.

mvn_runtime() { # POM DEST: copy the POM's runtime classpath into DEST/libs
	local pom=$1 dest=$2 tmp
	tmp="$(mktemp -d "$IMC_CACHE_DIR/tmp.XXXXXX")"
	log "resolving $(basename "$(dirname "$pom")") jars from Maven Central"
	(cd "$tmp" && mvn -q -B -Dstyle.color=never -f "$pom" \
		org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp/libs") || die "mvn failed for $pom"
	rm -rf "$dest"
	mv "$tmp" "$dest"
}

# install_jvm NAME HOME: the server NAME's jars, from hack/NAME/pom.xml.
install_jvm() {
	[[ -f "$2/.done" ]] && return 0
	with_lock "$1" _install_jvm "$@"
}
_install_jvm() {
	local name=$1 home=$2
	[[ -f "$home/.done" ]] && return 0 # another clone finished it while we waited
	mkdir -p "$IMC_CACHE_DIR"
	mvn_runtime "$REPO_ROOT/hack/$name/pom.xml" "$home"
	touch "$home/.done"
	log "$name installed in $home"
}

install_kafka() { install_jvm kafka "$KAFKA_HOME"; }

install_cassandra() {
	install_jvm cassandra "$CASSANDRA_HOME"
	ls "$CASSANDRA_HOME"/libs/jamm-*.jar >/dev/null || die "jamm agent jar missing from $CASSANDRA_HOME/libs"
}

install_depcheck() {
	# Rebuilt when its source changes; go build's cache makes that cheap.
	local sum
	sum="$(cat "$REPO_ROOT/hack/depcheck/main.go" "$REPO_ROOT/go.sum" | sha256sum | cut -c1-16)"
	[[ -x "$DEPCHECK_BIN" && -f "$DEPCHECK_BIN.$sum" ]] && return 0
	mkdir -p "$(dirname "$DEPCHECK_BIN")"
	(cd "$REPO_ROOT" && go build -o "$DEPCHECK_BIN" ./hack/depcheck) || die "building depcheck failed"
	rm -f "$DEPCHECK_BIN".* && touch "$DEPCHECK_BIN.$sum"
}

install_etcd() {
	install_depcheck
	[[ -x "$ETCD_BIN" ]] && return 0
	with_lock etcd _install_etcd
}
_install_etcd() {
	[[ -x "$ETCD_BIN" ]] && return 0
	log "building etcd $ETCD_VERSION from the Go module proxy (about a minute)"
	mkdir -p "$(dirname "$ETCD_BIN")"
	(cd "$REPO_ROOT/hack/tools/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
		-o "$ETCD_BIN.tmp" go.etcd.io/etcd/server/v3) || die "etcd build failed"
	mv "$ETCD_BIN.tmp" "$ETCD_BIN"
}

install_kube() {
	install_etcd
	if [[ ! -x "$K8S_DIR/kube-apiserver" || ! -x "$K8S_DIR/kubectl" ]]; then
		with_lock kube _install_kube
	fi
	mkdir -p "$ENVTEST_DIR"
	ln -sf "$K8S_DIR/kube-apiserver" "$ENVTEST_DIR/kube-apiserver"
	ln -sf "$K8S_DIR/kubectl" "$ENVTEST_DIR/kubectl"
	ln -sf "$ETCD_BIN" "$ENVTEST_DIR/etcd"
}
_install_kube() {
	local v=$K8S_VERSION minor ld bin
	minor="$(echo "$v" | cut -d. -f2)"
	ld="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld="$ld -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	mkdir -p "$K8S_DIR"
	for bin in kube-apiserver kubectl; do
		[[ -x "$K8S_DIR/$bin" ]] && continue
		log "building $bin $v from the Go module proxy (kube-apiserver: ~8-15 min cold)"
		(cd "$REPO_ROOT/hack/tools/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" \
			-o "$K8S_DIR/$bin.tmp" "k8s.io/kubernetes/cmd/$bin") || die "$bin build failed"
		mv "$K8S_DIR/$bin.tmp" "$K8S_DIR/$bin"
	done
}

install_helm() {
	[[ -x "$HELM_BIN" ]] && return 0
	with_lock helm _install_helm
}
_install_helm() {
	[[ -x "$HELM_BIN" ]] && return 0
	log "building helm $HELM_VERSION from the Go module proxy (~2 min cold)"
	mkdir -p "$(dirname "$HELM_BIN")"
	(cd "$IMC_CACHE_DIR" && GOBIN="$(dirname "$HELM_BIN")" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION") || die "helm build failed"
}
