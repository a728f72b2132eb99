# shellcheck shell=bash
# Configuration and PKI for hack/cluster.sh: certificates, kubeconfigs and
# the config files of containerd, the CNI, the kubelet and kube-proxy.
# Everything is written under $CL_DIR (the cluster's state directory).

# pki: a CA and one key pair per component, with openssl.
pki() {
	local p="$CL_DIR/pki"
	mkdir -p "$p"
	[[ -f "$p/ca.crt" ]] && return 0
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=imcluster-local-ca" \
		-keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
	openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
	openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
	cert apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	cert admin "/O=system:masters/CN=admin"
	cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
	cert kubelet-serving "/CN=$NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
	cert kube-proxy "/CN=system:kube-proxy"
	cert controller-manager "/CN=system:kube-controller-manager"
	cert scheduler "/CN=system:kube-scheduler"
}

cert() { # NAME SUBJECT [EXT]
	local p="$CL_DIR/pki" ext=()
	openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$p/$1.key" -out "$p/$1.csr" 2>/dev/null
	if [[ -n "${3:-}" ]]; then
		printf '%s\n' "$3" >"$p/$1.ext"
		ext=(-extfile "$p/$1.ext")
	fi
	openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 30 \
		"${ext[@]}" -out "$p/$1.crt" 2>/dev/null || die "signing the $1 certificate failed"
}

kubeconfig() { # NAME CERT: a kubeconfig for the component with that client certificate
	cat >"$CL_DIR/$1.kubeconfig" <<EOC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$NODE_IP:$CL_APISERVER_PORT
    certificate-authority: $CL_DIR/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $CL_DIR/pki/$2.crt
    client-key: $CL_DIR/pki/$2.key
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOC
}

containerd_config() {
	mkdir -p "$CL_DIR/containerd" "$CL_DIR/cni/net.d"
	cat >"$CL_DIR/containerd/config.toml" <<EOC
version = 2
root = "$CL_DIR/containerd/root"
state = "$CL_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CL_SOCK"
[ttrpc]
  address = "$CL_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CL_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CL_DIR/cni/net.d"
EOC
	cat >"$CL_DIR/cni/net.d/10-imcluster.conflist" <<EOC
{
  "cniVersion": "0.4.0",
  "name": "imcluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CL_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CL_DIR/cni/ipam",
        "ranges": [[{"subnet": "$CL_POD_CIDR", "gateway": "$CL_POD_GW"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOC
}

kubelet_config() {
	mkdir -p "$CL_DIR/kubelet"
	cat >"$CL_DIR/kubelet/config.yaml" <<EOC
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CL_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [$CL_DNS_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $CL_DIR/pod-logs
tlsCertFile: $CL_DIR/pki/kubelet-serving.crt
tlsPrivateKeyFile: $CL_DIR/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CL_DIR/pki/ca.crt}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $CL_KUBELET_HEALTHZ_PORT
port: $CL_KUBELET_PORT
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 60
protectKernelDefaults: false
EOC
}

kube_proxy_config() {
	cat >"$CL_DIR/kube-proxy.yaml" <<EOC
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $CL_POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:$CL_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$CL_PROXY_METRICS_PORT
clientConnection: {kubeconfig: $CL_DIR/kube-proxy.kubeconfig}
conntrack: {maxPerCore: 0}
iptables: {localhostNodePorts: false, masqueradeAll: true}
EOC
}

# coredns_manifest: CoreDNS as a Deployment of the local image, Service
# kube-dns at $CL_DNS_IP (dnsPolicy Default: it forwards to the host's resolvers).
coredns_manifest() {
	cat <<EOC
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        forward . /etc/resolv.conf
        cache 30
        loop
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $CL_DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
EOC
}
