// Command manager is the imcluster operator: it reconciles IMCluster
// objects (api/v1alpha1) into the message and push tiers (controllers).
//
// It serves Prometheus metrics (controller-runtime's plus the operator's
// own, imcluster_operator_*) on --metrics-bind-address and /healthz,
// /readyz on --health-probe-bind-address, and elects a leader through a
// Lease so that several replicas can run with one active.
//
// Flags: --metrics-bind-address, --health-probe-bind-address,
// --leader-elect, --leader-election-namespace, --max-concurrent-reconciles,
// --kubeconfig (outside a cluster), and the zap logging flags
// (--zap-log-level, --zap-devel...). Deployed by config/default or the Helm
// chart charts/imcluster-operator; docs/operator.md describes it.
package main
