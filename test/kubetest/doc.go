// Package kubetest is the envtest setup the operator's tests share
// (controllers and test/operator): Start runs one kube-apiserver and etcd
// from the envtest binaries, optionally with the IMCluster CRD installed,
// and gives a direct client plus a system:masters kubeconfig for a real
// kubectl in a temporary folder; Stop ends it and removes the folder.
// Eventually polls a check until a deadline. Callers find the binaries
// with testdeps.KubebuilderAssets and own the lifetime (one per package or
// one per test).
package kubetest
