// Package realnode tests the real deployment path of issue 10: the image that
// `make image` builds without Docker (hack/image.sh) and a real local cluster
// (hack/cluster.sh: a control plane plus one real node — kubelet,
// containerd, runc, kube-proxy, bridge CNI, CoreDNS) on which the chart, the
// operator and the tiers run as pods.
//
// Contract:
//   - TestImageMatchesDockerfile builds the image and fails when it drifts
//     from ./Dockerfile's runtime stage: the same binaries (by their Go main
//     package), user, entrypoint and OCI labels, a static ELF each, nothing
//     else in the layers but the CA bundle.
//   - TestJourney brings the cluster up (hack/cluster.sh up), installs the
//     chart with the local image, applies an IMCluster pointing at private
//     Kafka, Cassandra and etcd listening on the node's IP, awaits Ready,
//     chats through the Services, scales and drains, and tears everything
//     down (hack/cluster.sh down) even on failure. The chart goes in with
//     its dashboard ConfigMap and, on prometheus-operator's CRD
//     (testdata/prometheusrule-crd.yaml), its PrometheusRule. Along the
//     way it scrapes the message, push and operator pods' /metrics and
//     fails when the chart's Grafana dashboard or PrometheusRule names a
//     metric no pod exports (event-only families excepted, which
//     must then be defined in the Go source), or matches on a label the
//     metric does not carry.
//   - TestMonitoringManifests (helm only, no cluster): the chart lints and
//     renders with the dashboards and alerts on, the dashboard is JSON and
//     the PrometheusRule strict YAML, every query's metric names extract,
//     every imcluster_* name is defined in the source, every alert has a
//     severity, summary, description and a runbook in docs/observability.md,
//     and both are off by default. TestPromQLMetrics tests the extractor.
//
// The host must be able to run a node: root, and the Debian packages
// (containerd, runc, containernetworking-plugins, iptables, conntrack, socat,
// podman) present or installable with apt-get. Otherwise the tests skip (a
// host that cannot, not a missing dependency), unless IMC_REALNODE=1 demands
// them; IMC_REALNODE=0 skips them on purpose. A piece the scripts install
// (binaries, packages) that fails to install fails the test.
package realnode
