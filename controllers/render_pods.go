package controllers

import (
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/services/config"
)

const nonRootUID = 65532 // distroless "nonroot"

// podSecurityContext: non-root, default seccomp, fsGroup for mounted Secrets.
func podSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](nonRootUID),
		RunAsGroup:     ptr.To[int64](nonRootUID),
		FSGroup:        ptr.To[int64](nonRootUID),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// containerSecurityContext: read-only root, no privilege escalation, no
// capabilities.
func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// secretVolumes are the Secrets a tier or the bootstrap Job mounts.
type secretVolumes struct {
	auth, kafka, cassandra, etcd bool
	webhook                      bool                   // message: spec.webhooks' signing secret
	listenerTLS                  *v1alpha1.TLSSecretRef // the tier's own listener pair
	messageCA                    bool                   // push: ca.crt of spec.message.tls
}

func volumes(c *v1alpha1.IMCluster, want secretVolumes) ([]corev1.Volume, []corev1.VolumeMount) {
	s := &c.Spec
	vols := []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	mounts := []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}}
	add := func(name, secret, dir string, items []corev1.KeyToPath) {
		vols = append(vols, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, Items: items, DefaultMode: ptr.To[int32](0o440),
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: dir, ReadOnly: true})
	}
	creds := func(r *v1alpha1.CredentialsSecretRef) []corev1.KeyToPath {
		return []corev1.KeyToPath{{Key: r.UsernameKey, Path: "username"}, {Key: r.PasswordKey, Path: "password"}}
	}
	if want.auth {
		add("auth", s.Auth.SecretName, authDir, []corev1.KeyToPath{
			{Key: s.Auth.UserKey, Path: "user"},
			{Key: s.Auth.ServiceKey, Path: "service"},
			{Key: s.Auth.InternalKey, Path: "internal"},
		})
	}
	if want.kafka && s.Kafka.TLS != nil {
		add("kafka-tls", s.Kafka.TLS.SecretName, kafkaTLSDir, nil)
	}
	if want.kafka && s.Kafka.SASL != nil {
		add("kafka-sasl", s.Kafka.SASL.SecretName, kafkaSASLDir, creds(s.Kafka.SASL))
	}
	if want.cassandra && s.Cassandra.Credentials != nil {
		add("cassandra", s.Cassandra.Credentials.SecretName, cassandraDir, creds(s.Cassandra.Credentials))
	}
	if want.webhook && s.Webhooks != nil { // read at start: a change rolls message
		add("webhook", s.Webhooks.SecretName, webhookDir, []corev1.KeyToPath{{Key: s.Webhooks.SecretKey, Path: "secret"}})
	}
	if want.etcd && s.Etcd.TLS != nil {
		add("etcd-tls", s.Etcd.TLS.SecretName, etcdTLSDir, nil)
	}
	if want.listenerTLS != nil { // followed in place: in reloadedSecretVolumes
		add("tls", want.listenerTLS.SecretName, listenerTLSDir, []corev1.KeyToPath{
			{Key: corev1.TLSCertKey, Path: corev1.TLSCertKey},
			{Key: corev1.TLSPrivateKeyKey, Path: corev1.TLSPrivateKeyKey},
		})
	}
	if want.messageCA && s.Message.TLS != nil { // read at start: a change rolls push
		add("message-ca", s.Message.TLS.SecretName, messageCADir, []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}})
	}
	return vols, mounts
}

// podEnv is the per-pod part of the environment; the ConfigMap (envFrom)
// carries the rest. Explicit env wins over envFrom.
func podEnv(extra map[string]string) []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: config.EnvNodeID, Value: "$(POD_NAME)"},
	}
	for _, k := range sortedKeys(extra) {
		env = append(env, corev1.EnvVar{Name: k, Value: extra[k]})
	}
	return env
}

func httpProbe(path string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString("metrics"),
		}},
		PeriodSeconds:    period,
		FailureThreshold: failures,
		TimeoutSeconds:   2,
	}
}

// tierPodTemplate renders a tier's pod template; configHash is the hash of
// the configuration that tier reads.
func tierPodTemplate(c *v1alpha1.IMCluster, tier string, spec *v1alpha1.TierSpec, configHash string) corev1.PodTemplateSpec {
	var (
		ports []corev1.ContainerPort
		env   map[string]string
		grace int32
		want  = secretVolumes{auth: true, etcd: true}
	)
	metricsAddr := fmt.Sprintf(":%d", metricsPort)
	switch tier {
	case TierMessage:
		m := &c.Spec.Message
		ports = []corev1.ContainerPort{{Name: "http", ContainerPort: m.Port}}
		env = map[string]string{
			config.EnvHTTPAddr:      fmt.Sprintf(":%d", m.Port),
			config.EnvMetricsAddr:   metricsAddr,
			config.EnvShutdownGrace: fmt.Sprintf("%ds", m.ShutdownGraceSeconds),
		}
		grace = m.ShutdownGraceSeconds
		want.kafka, want.cassandra = true, true
		want.listenerTLS = m.TLS
		want.webhook = true
	case TierPush:
		p := &c.Spec.Push
		ports = []corev1.ContainerPort{
			{Name: "ws", ContainerPort: p.Port},
			{Name: "internal", ContainerPort: p.InternalPort},
		}
		env = map[string]string{
			config.EnvHTTPAddr:      fmt.Sprintf(":%d", p.Port),
			config.EnvInternalAddr:  fmt.Sprintf(":%d", p.InternalPort),
			config.EnvMetricsAddr:   metricsAddr,
			config.EnvAdvertiseURL:  fmt.Sprintf("http://$(POD_IP):%d", p.InternalPort),
			config.EnvShutdownGrace: fmt.Sprintf("%ds", p.DrainSeconds),
		}
		grace = p.DrainSeconds
		want.listenerTLS = p.TLS
		if c.Spec.Message.TLS != nil {
			want.messageCA = true
			env[config.EnvTLSCAFile] = messageCADir + "/ca.crt"
		}
	}
	// Probes stay on the plain metrics listener: TLS changes none of them.
	if want.listenerTLS != nil {
		env[config.EnvTLSCertFile] = listenerTLSDir + "/" + corev1.TLSCertKey
		env[config.EnvTLSKeyFile] = listenerTLSDir + "/" + corev1.TLSPrivateKeyKey
	}
	ports = append(ports, corev1.ContainerPort{Name: "metrics", ContainerPort: metricsPort})
	for i := range ports {
		ports[i].Protocol = corev1.ProtocolTCP
	}
	vols, mounts := volumes(c, want)

	annotations := maps.Clone(spec.PodAnnotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationConfigHash] = configHash

	labels := commonLabels(c, tier)
	spread := spec.TopologySpreadConstraints
	if len(spread) == 0 {
		spread = []corev1.TopologySpreadConstraint{{
			MaxSkew:           1,
			TopologyKey:       "kubernetes.io/hostname",
			WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: selectorLabels(c, tier)},
		}}
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			SecurityContext:               podSecurityContext(),
			ImagePullSecrets:              c.Spec.ImagePullSecrets,
			TerminationGracePeriodSeconds: ptr.To(int64(preStopSeconds + grace + graceMargin)),
			Affinity:                      spec.Affinity,
			TopologySpreadConstraints:     spread,
			NodeSelector:                  spec.NodeSelector,
			Tolerations:                   spec.Tolerations,
			Volumes:                       vols,
			Containers: []corev1.Container{{
				Name:            tier,
				Image:           c.Spec.Image,
				ImagePullPolicy: c.Spec.ImagePullPolicy,
				Command:         []string{binary, tier},
				Ports:           ports,
				Env:             podEnv(env),
				EnvFrom:         configEnvFrom(c),
				Resources:       spec.Resources,
				VolumeMounts:    mounts,
				SecurityContext: containerSecurityContext(),
				StartupProbe:    httpProbe("/healthz", 5, 60),
				LivenessProbe:   httpProbe("/healthz", 10, 3),
				ReadinessProbe:  httpProbe("/readyz", 5, 3),
				Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
					// A pause, then SIGTERM: the service drains itself
					// within IM_SHUTDOWN_GRACE (push: drain frames to
					// clients, presence dropped; message: in-flight
					// requests and offset commits).
					Sleep: &corev1.SleepAction{Seconds: preStopSeconds},
				}},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
		},
	}
}

// bootstrapPodTemplate renders the bootstrap Job's pod.
func bootstrapPodTemplate(c *v1alpha1.IMCluster) corev1.PodTemplateSpec {
	vols, mounts := volumes(c, secretVolumes{kafka: true, cassandra: true})
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: commonLabels(c, ComponentBoot)},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext:              podSecurityContext(),
			ImagePullSecrets:             c.Spec.ImagePullSecrets,
			Volumes:                      vols,
			Containers: []corev1.Container{{
				Name:                     ComponentBoot,
				Image:                    c.Spec.Image,
				ImagePullPolicy:          c.Spec.ImagePullPolicy,
				Command:                  []string{binary, ComponentBoot},
				Env:                      podEnv(nil),
				EnvFrom:                  configEnvFrom(c),
				Resources:                c.Spec.Bootstrap.Resources,
				VolumeMounts:             mounts,
				SecurityContext:          containerSecurityContext(),
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
		},
	}
}

// configEnvFrom takes a container's environment from the cluster's
// ConfigMap (render_config.go).
func configEnvFrom(c *v1alpha1.IMCluster) []corev1.EnvFromSource {
	return []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(c)},
	}}}
}
