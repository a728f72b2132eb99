// Package v1alpha1 holds the IMCluster API (group imcluster.io, version
// v1alpha1): the custom resource a platform team applies to run the imcluster
// message and push tiers against Kafka, Cassandra and etcd that it runs
// itself (Strimzi, K8ssandra, an etcd cluster...).
//
// Files by concern, as in CloudNativePG:
//
//   - imcluster_types.go: spec and status, with the OpenAPI/CEL validation,
//     defaults, printer columns, short name and scale subresource as markers
//     (controller-gen turns them into config/crd and the chart's CRD).
//   - imcluster_defaults.go: the same defaults applied in Go, so code that
//     builds an object by hand (tests, the reconciler before the apiserver has
//     seen it) sees the values the apiserver would set.
//   - imcluster_conditions.go: condition types and reasons (Ready,
//     Progressing, Degraded) and helpers to read them. Ready means every
//     tier can serve, not that the spec is fully applied: routine scaling
//     and rollouts show in Progressing, trouble in Degraded.
//   - imcluster_annotations.go: the pause annotation (imcluster.io/paused).
//
// Scaling: the scale subresource drives the push tier
// (`kubectl scale imcluster/NAME --replicas=N` sets spec.push.replicas). Push
// pods hold the client WebSockets, so connection count is what platform teams
// scale with day to day. The message tier is scaled with a patch:
//
//	kubectl patch imcluster NAME --type merge -p '{"spec":{"message":{"replicas":N}}}'
//
// (more message pods than Kafka partitions add API capacity but not pipeline
// capacity: each partition has one consumer).
//
// +kubebuilder:object:generate=true
// +groupName=imcluster.io
package v1alpha1
