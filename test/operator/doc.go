// Package operator tests the operator's deliverables from the outside, as a
// platform team meets them, against a real kube-apiserver (envtest):
//
//   - the Helm chart: helm lint, helm template with default and full values,
//     the rendered output applied to the apiserver, and a real helm install,
//     upgrade and uninstall (the CRD stays: keep policy);
//   - the kustomize manifests in config/ (kubectl kustomize, applied);
//   - the manager binary (cmd/manager) run as a process: leader election,
//     health and metrics endpoints, reconciling an IMCluster;
//   - the figures of docs/benchmarks.md (reconcile latency, memory with 100
//     IMCluster objects), only with IMC_OPERATOR_BENCH=1.
//
// Binaries come from hack/deps.sh (KUBEBUILDER_ASSETS, IMC_HELM); a missing
// one skips locally and fails under CI=true, as in test/testdeps.
package operator
