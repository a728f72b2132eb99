// Flags: --metrics-bind-address, --health-probe-bind-address,
// --leader-elect, --leader-election-namespace, --max-concurrent-reconciles,
// --kubeconfig (outside a cluster), and the zap logging flags (--zap-devel,
// --zap-log-level...). Deployed by config/manager or the Helm chart
// charts/imcluster-operator.
package main
