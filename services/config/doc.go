// Package config is the one place where the configuration of the imcluster
// tiers is defined: the environment variables each process reads, their
// defaults, and their validation.
//
// Both sides use it. The services call Load* at start-up; the operator calls
// the same types' Env methods to render the ConfigMap/Deployment env, so a
// name can never drift between what the operator writes and what a pod reads.
//
// Secrets are never values here: a field ending in File names a file (a
// mounted Kubernetes Secret) that the process reads itself.
package config
