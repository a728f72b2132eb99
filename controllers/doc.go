// Package controllers holds the IMCluster reconciler.
//
// One IMCluster becomes, all owned by it (controller owner reference, so
// deleting the IMCluster garbage-collects everything):
//
//   - ConfigMap <name>-config: the rendered service configuration, exactly
//     the environment services/config reads (config.Message.Env and
//     config.Push.Env), less the per-pod and per-tier listener settings that
//     live in each container's env.
//   - Job <name>-bootstrap-<hash>: `imcluster bootstrap` (Kafka topics and
//     Cassandra migrations). It gates the tiers: Deployments are created or
//     changed only once the Job for the current configuration hash succeeded;
//     until then running pods keep the previous template. Delete a failed Job
//     to retry it.
//   - Deployments <name>-message and <name>-push: non-root, read-only root
//     file system, probes on /healthz and /readyz, RollingUpdate with
//     maxUnavailable 0, and an imcluster.io/config-hash annotation on the pod
//     template computed from only the configuration that tier reads, so a
//     change rolls the pods that read it and nothing else; and an
//     imcluster.io/secret-hash annotation of the data of the Secrets that
//     tier reads only at start (Kafka TLS/SASL, Cassandra credentials, etcd
//     TLS — not the signing keys, which the processes reload in place),
//     watched metadata-only and read at reconcile. Push pods get a
//     preStop pause (endpoints drop them first) then drain on SIGTERM within
//     spec.push.drainSeconds; the grace period is sized to fit both.
//   - Services <name>-message (API + metrics), <name>-push (clients) and
//     <name>-push-internal (headless: delivery + metrics of each push pod).
//   - PodDisruptionBudgets per tier (unless disabled) and a
//     HorizontalPodAutoscaler per tier when spec.<tier>.autoscaling is set.
//
// Writes: every child carries an imcluster.io/spec-hash annotation of what
// the operator wants it to be; a child whose hash and replica count match is
// not written at all, so steady-state reconciles cost reads from the cache
// only. A child changed by hand is corrected at the next spec change (or when
// deleted: it is recreated at once).
//
// Status: observedGeneration, per-tier status and the conditions Ready,
// Progressing and Degraded are derived from the children on every
// reconcile, and patched with an optimistic lock only when they changed.
// They are split by concern so that alerting can trust them: Ready means
// every tier can serve (its PodDisruptionBudget's minimum of available
// pods), so scaling and rollouts keep it True and show in Progressing;
// Degraded and Warning events are for trouble only (docs/operator.md,
// "Status").
//
// Pause: the annotation imcluster.io/paused=true makes the reconcile write
// no child, only the status (Progressing=False, reason Paused).
//
// Files by concern: imcluster_controller.go (entry point, watches, RBAC),
// render_*.go (desired objects), create.go (create/update/delete of
// children), scale.go (replica counts and autoscaling), bootstrap.go (the
// gate), secrets.go (the Secrets that roll a tier), status.go (the
// conditions), status_tiers.go (each tier's state and minimum),
// status_events.go (the status patch and its events), metrics.go.
package controllers
