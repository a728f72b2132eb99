package controllers

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// reconcileBootstrap runs the bootstrap Job for the current configuration
// and reports its state. The tiers may roll out a configuration only when
// the returned status says it succeeded (BootstrapDone(hash)).
//
// The success of a configuration hash is remembered in
// status.bootstrap.succeededHash, so a finished Job that is deleted (by a
// user, or a TTL) is not run again. A failed Job is left in place for its
// logs; deleting it makes the operator run a new one.
func (r *IMClusterReconciler) reconcileBootstrap(ctx context.Context, c *v1alpha1.IMCluster, rd rendered) (v1alpha1.BootstrapStatus, string, error) {
	hash := bootstrapHash(c, rd)
	st := c.Status.Bootstrap
	before := st.Phase
	st.Hash = hash
	st.JobName = bootstrapJobName(c, hash)

	if st.BootstrapDone(hash) {
		st.Phase, st.Message = v1alpha1.BootstrapSucceeded, ""
		return st, hash, r.deleteStaleJobs(ctx, c, hash)
	}
	obj, err := r.ensure(ctx, c, renderBootstrapJob(c, hash), nil, nil)
	if err != nil {
		return st, hash, fmt.Errorf("while reconciling the bootstrap Job: %w", err)
	}
	job := obj.(*batchv1.Job)
	switch cond := jobFinished(job); {
	case cond != nil && cond.Type == batchv1.JobComplete:
		st.Phase, st.Message, st.SucceededHash = v1alpha1.BootstrapSucceeded, "", hash
		r.event(c, job, corev1.EventTypeNormal, "BootstrapSucceeded", "Bootstrap",
			"Bootstrap Job %s succeeded: topics and schema are ready", job.Name)
		if err := r.deleteStaleJobs(ctx, c, hash); err != nil {
			return st, hash, err
		}
	case cond != nil:
		st.Phase = v1alpha1.BootstrapFailed
		st.Message = fmt.Sprintf("Job %s failed (%s): %s; delete the Job to retry", job.Name, cond.Reason, cond.Message)
		if before != v1alpha1.BootstrapFailed {
			r.event(c, job, corev1.EventTypeWarning, "BootstrapFailed", "Bootstrap", "%s", st.Message)
		}
	default:
		st.Phase, st.Message = v1alpha1.BootstrapRunning, ""
		if before != v1alpha1.BootstrapRunning {
			r.event(c, job, corev1.EventTypeNormal, "BootstrapStarted", "Bootstrap",
				"Bootstrap Job %s creates the Kafka topics and migrates the Cassandra schema", job.Name)
		}
	}
	return st, hash, nil
}

// jobFinished returns the Job's terminal condition (Complete, Failed, or
// FailureTarget, which precedes Failed), or nil while it runs.
func jobFinished(j *batchv1.Job) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		cond := &j.Status.Conditions[i]
		if cond.Status != corev1.ConditionTrue {
			continue
		}
		switch cond.Type {
		case batchv1.JobComplete, batchv1.JobFailed, batchv1.JobFailureTarget:
			return cond
		}
	}
	return nil
}

// deleteStaleJobs removes bootstrap Jobs of earlier configurations (and
// their pods).
func (r *IMClusterReconciler) deleteStaleJobs(ctx context.Context, c *v1alpha1.IMCluster, hash string) error {
	var jobs batchv1.JobList
	if err := r.List(ctx, &jobs, client.InNamespace(c.Namespace), client.MatchingLabels{
		LabelCluster: c.Name, LabelComponent: ComponentBoot,
	}); err != nil {
		return fmt.Errorf("while listing bootstrap Jobs: %w", err)
	}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if j.Labels[LabelBootHash] == hash {
			continue
		}
		if err := r.deleteChild(ctx, c, j); err != nil {
			return fmt.Errorf("while deleting a stale bootstrap Job: %w", err)
		}
	}
	return nil
}
