package testdeps

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Environment variables that override the default endpoints.
const (
	EnvKafka     = "IM_TEST_KAFKA"     // host:port[,host:port]
	EnvCassandra = "IM_TEST_CASSANDRA" // host:port[,host:port]
	EnvEtcd      = "IM_TEST_ETCD"      // host:port[,host:port]
	EnvAssets    = "KUBEBUILDER_ASSETS"
)

// Kafka returns the broker addresses, or skips/fails t if none answers.
func Kafka(t testing.TB) []string { return endpoints(t, EnvKafka, "127.0.0.1:9092", "Kafka") }

// Cassandra returns the CQL contact points, or skips/fails t.
func Cassandra(t testing.TB) []string {
	return endpoints(t, EnvCassandra, "127.0.0.1:9042", "Cassandra")
}

// Etcd returns the etcd client endpoints, or skips/fails t.
func Etcd(t testing.TB) []string { return endpoints(t, EnvEtcd, "127.0.0.1:2379", "etcd") }

// KubebuilderAssets returns the folder holding kube-apiserver, etcd and
// kubectl for envtest, or skips/fails t.
func KubebuilderAssets(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvAssets)
	for _, bin := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if dir == "" {
			missing(t, "KUBEBUILDER_ASSETS is not set (run: hack/deps.sh install kube)")
			return ""
		}
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			missing(t, bin+" not found in KUBEBUILDER_ASSETS="+dir)
			return ""
		}
	}
	return dir
}

// Unique returns prefix plus a random suffix, for topics, keyspaces and etcd
// prefixes that must not collide between tests or runs. Only [a-z0-9_].
func Unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(prefix) + "_" + hex.EncodeToString(b[:])
}

func endpoints(t testing.TB, env, def, name string) []string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		v = def
	}
	eps := strings.Split(v, ",")
	for _, ep := range eps {
		c, err := net.DialTimeout("tcp", ep, 2*time.Second)
		if err == nil {
			_ = c.Close()
			return eps
		}
	}
	missing(t, name+" is not reachable at "+v+" (run: make deps-up)")
	return nil
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("dependency missing under CI=true: %s", why)
	}
	t.Skipf("dependency missing: %s", why)
}
