package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// Secrets the tiers read only at start (Kafka TLS/SASL, Cassandra
// credentials, etcd TLS, and whatever else a tier's pod template takes from
// a Secret) roll the tier when their content changes: the pod template
// carries AnnotationSecretHash, a hash of the data the tier uses of them.
// The signing keys and the listeners' TLS pairs are the exception: the
// processes re-read those files in place (services/auth KeyFile,
// services/tlsconf CertFile), so the auth Secret and the tls volume never
// roll pods (reloadedSecretVolumes). The message CA that push pods trust
// (message-ca volume) is read at start and does roll push.
//
// The operator learns of a change through a metadata-only watch of Secrets
// (see CacheOptions), maps it to the IMClusters of the namespace that
// reference the Secret (the field index IndexSecretRefs), and reads the
// data of just those Secrets from the apiserver during the reconcile.

// AnnotationSecretHash on a pod template: hash of the data of the Secrets
// that tier reads at start; changing it rolls the tier. Absent when the
// tier reads no such Secret.
const AnnotationSecretHash = "imcluster.io/secret-hash"

// IndexSecretRefs indexes IMClusters by the names of the Secrets their
// tiers read at start (the ones whose change rolls a tier).
const IndexSecretRefs = "imcluster.io/restart-secrets"

// reloadedSecretVolumes are the Secret volumes whose files the processes
// re-read while running: a change needs no roll. A new Secret volume rolls
// its tier by default; add its volume name here only if the process
// follows its files.
var reloadedSecretVolumes = map[string]bool{"auth": true, "tls": true}

// secretUse is what a pod template takes from one Secret: every key (all)
// or the listed ones; optional when every reference to it is optional.
type secretUse struct {
	all      bool
	keys     map[string]bool
	optional bool
}

// restartSecrets lists the Secrets, by name, that a pod template reads at
// start: Secret volumes (plain or projected) other than the reloaded ones,
// env secretKeyRefs and envFrom secretRefs.
func restartSecrets(tmpl *corev1.PodTemplateSpec) map[string]*secretUse {
	uses := map[string]*secretUse{}
	add := func(name string, keys []string, optional *bool) {
		if name == "" {
			return
		}
		opt := optional != nil && *optional
		u, ok := uses[name]
		if !ok {
			u = &secretUse{keys: map[string]bool{}, optional: opt}
			uses[name] = u
		}
		u.optional = u.optional && opt
		if keys == nil {
			u.all = true
		}
		for _, k := range keys {
			u.keys[k] = true
		}
	}
	itemKeys := func(items []corev1.KeyToPath) []string {
		if len(items) == 0 {
			return nil // the whole Secret
		}
		keys := make([]string, 0, len(items))
		for _, it := range items {
			keys = append(keys, it.Key)
		}
		return keys
	}
	for _, v := range tmpl.Spec.Volumes {
		if reloadedSecretVolumes[v.Name] {
			continue
		}
		if s := v.Secret; s != nil {
			add(s.SecretName, itemKeys(s.Items), s.Optional)
		}
		if p := v.Projected; p != nil {
			for _, src := range p.Sources {
				if s := src.Secret; s != nil {
					add(s.Name, itemKeys(s.Items), s.Optional)
				}
			}
		}
	}
	for _, ctr := range slices.Concat(tmpl.Spec.InitContainers, tmpl.Spec.Containers) {
		for _, e := range ctr.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				ref := e.ValueFrom.SecretKeyRef
				add(ref.Name, []string{ref.Key}, ref.Optional)
			}
		}
		for _, e := range ctr.EnvFrom {
			if e.SecretRef != nil {
				add(e.SecretRef.Name, nil, e.SecretRef.Optional)
			}
		}
	}
	return uses
}

// tierRestartSecrets lists the Secrets a tier of the (defaulted) cluster
// reads at start.
func tierRestartSecrets(c *v1alpha1.IMCluster, tier string) map[string]*secretUse {
	tmpl := tierPodTemplate(c, tier, tierSpec(c, tier), "")
	return restartSecrets(&tmpl)
}

// secretRefsIndex is the IndexSecretRefs function: the Secrets either tier
// of an IMCluster reads at start.
func secretRefsIndex(o client.Object) []string {
	c, ok := o.(*v1alpha1.IMCluster)
	if !ok {
		return nil
	}
	c = c.DeepCopy()
	c.SetDefaults()
	var names []string
	for _, tier := range []string{TierMessage, TierPush} {
		for name := range tierRestartSecrets(c, tier) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// clustersForSecret maps a Secret event to the IMClusters of its namespace
// whose tiers read it at start (through the index, from the cache).
func (r *IMClusterReconciler) clustersForSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	var list v1alpha1.IMClusterList
	if err := r.List(ctx, &list, client.InNamespace(secret.GetNamespace()),
		client.MatchingFields{IndexSecretRefs: secret.GetName()}); err != nil {
		// The cache lists from memory; it fails only when misconfigured.
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// secretProblem is a Secret, or a key of it, that a tier needs and that
// does not exist.
type secretProblem struct {
	tier, secret, key string // key "" when the whole Secret is missing
}

func (p secretProblem) String() string {
	if p.key == "" {
		return fmt.Sprintf("Secret %q not found", p.secret)
	}
	return fmt.Sprintf("Secret %q has no key %q", p.secret, p.key)
}

// secretProblemsMessage summarises problems for a condition and an event:
// which Secret, which tiers wait for it.
func secretProblemsMessage(problems []secretProblem) string {
	tiers := map[string][]string{}
	var order []string
	for _, p := range problems {
		s := p.String()
		if _, ok := tiers[s]; !ok {
			order = append(order, s)
		}
		tiers[s] = append(tiers[s], p.tier)
	}
	parts := make([]string, 0, len(order))
	for _, s := range order {
		noun := "tier"
		if len(tiers[s]) > 1 {
			noun = "tiers"
		}
		parts = append(parts, fmt.Sprintf("%s (read by the %s %s at start)", s, strings.Join(tiers[s], " and "), noun))
	}
	return strings.Join(parts, "; ") + "; a tier is not updated while a Secret it reads at start is missing"
}

// secretsRead holds the Secrets one reconcile read from the apiserver, by
// name (nil: not found), so a Secret both tiers read is fetched once.
type secretsRead map[string]*corev1.Secret

// tierSecretHash reads the Secrets a tier reads at start and returns the
// hash of the data it uses of them ("" when it reads none), and what is
// missing. Secret data is read from the apiserver (APIReader), never from
// the cache: the cache holds Secrets' metadata only; read remembers what
// this reconcile already fetched.
func (r *IMClusterReconciler) tierSecretHash(ctx context.Context, c *v1alpha1.IMCluster, tier string, read secretsRead) (string, []secretProblem, error) {
	uses := tierRestartSecrets(c, tier)
	if len(uses) == 0 {
		return "", nil, nil
	}
	reader := r.APIReader
	if reader == nil {
		// The cache never holds Secret data (CacheOptions).
		return "", nil, fmt.Errorf("while reading the Secrets of the %s tier: the reconciler has no APIReader", tier)
	}
	var problems []secretProblem
	// name -> key -> sha256 of the value; only digests enter the hash.
	digests := map[string]map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(uses)) {
		use := uses[name]
		s, seen := read[name]
		if !seen {
			s = &corev1.Secret{}
			err := reader.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, s)
			switch {
			case apierrors.IsNotFound(err):
				s = nil
			case err != nil:
				return "", nil, fmt.Errorf("while reading Secret %s (the %s tier reads it at start): %w", name, tier, err)
			}
			read[name] = s
		}
		if s == nil {
			if !use.optional {
				problems = append(problems, secretProblem{tier: tier, secret: name})
			}
			digests[name] = nil // absent
			continue
		}
		keys := slices.Sorted(maps.Keys(use.keys))
		if use.all {
			keys = slices.Sorted(maps.Keys(s.Data))
		}
		d := make(map[string]string, len(keys))
		for _, k := range keys {
			v, ok := s.Data[k]
			if !ok {
				if !use.optional {
					problems = append(problems, secretProblem{tier: tier, secret: name, key: k})
				}
				continue
			}
			sum := sha256.Sum256(v)
			d[k] = hex.EncodeToString(sum[:])
		}
		digests[name] = d
	}
	return hashOf(digests), problems, nil
}
