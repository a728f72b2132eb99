package realnode

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// localCluster is a running hack/cluster.sh cluster.
type localCluster struct {
	root, kubeconfig, nodeIP, kubectlBin, helm string
	env                                        []string
}

// clusterUp runs hack/cluster.sh up (install included) and registers
// hack/cluster.sh down, which runs even when the test fails.
func clusterUp(t *testing.T, root string) *localCluster {
	t.Helper()
	lockMachine(t)
	script := filepath.Join(root, "hack", "cluster.sh")
	dir := filepath.Join(root, ".run", "cluster-test")
	env := []string{"IMC_CLUSTER_DIR=" + dir}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, dir)
		}
		if _, err := run(t, 3*time.Minute, env, "bash", script, "down"); err != nil {
			t.Errorf("hack/cluster.sh down: %v", err)
		}
	})
	// A run killed before its clean-up (Ctrl-C, a go test timeout) left its
	// cluster behind: down removes it (a no-op otherwise).
	if _, err := run(t, 3*time.Minute, env, "bash", script, "down"); err != nil {
		t.Fatalf("hack/cluster.sh down before up: %v", err)
	}
	// Install first (cold: the node's binaries build for minutes), then up.
	if _, err := run(t, 40*time.Minute, env, "bash", script, "install"); err != nil {
		t.Fatalf("hack/cluster.sh install: %v", err)
	}
	t0 := time.Now()
	if _, err := run(t, 5*time.Minute, env, "bash", script, "up"); err != nil {
		t.Fatalf("hack/cluster.sh up: %v", err)
	}
	t.Logf("cluster up in %s", time.Since(t0).Round(100*time.Millisecond))
	out, err := run(t, time.Minute, env, "bash", script, "env")
	if err != nil {
		t.Fatal(err)
	}
	c := &localCluster{root: root, env: env}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		switch k {
		case "KUBECONFIG":
			c.kubeconfig = v
		case "IMC_NODE_IP":
			c.nodeIP = v
		case "IMC_KUBECTL":
			c.kubectlBin = v
		case "IMC_HELM":
			c.helm = v
		}
	}
	if c.kubeconfig == "" || c.nodeIP == "" || c.kubectlBin == "" || c.helm == "" {
		t.Fatalf("hack/cluster.sh env printed %q", out)
	}
	c.env = append(c.env, "KUBECONFIG="+c.kubeconfig)
	return c
}

func (c *localCluster) load(t *testing.T, archive string) {
	t.Helper()
	if _, err := run(t, 5*time.Minute, c.env, "bash", filepath.Join(c.root, "hack", "cluster.sh"), "load", archive); err != nil {
		t.Fatalf("loading %s into the node: %v", archive, err)
	}
}

func (c *localCluster) kubectl(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	return run(t, timeout, c.env, c.kubectlBin, args...)
}

func (c *localCluster) mustKubectl(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := c.kubectl(t, timeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dumpLogs(t *testing.T, dir string) {
	for _, n := range []string{"kubelet", "kube-apiserver", "containerd"} {
		b, _ := os.ReadFile(filepath.Join(dir, "logs", n+".log"))
		t.Logf("--- last of %s.log:\n%s", n, tail(string(b), 3000))
	}
}

// privateDeps starts Kafka, Cassandra and etcd of the test's own with
// hack/deps.sh on the node's IP (pods cannot reach the host's loopback) and
// free ports, data under .run/realnode-deps (fresh each run); stopped when
// the test ends, and first of all when a killed run left them running.
type privateDeps struct {
	kafka, cassandra, etcd string // host:port
}

func startDeps(t *testing.T, root, ip string) privateDeps {
	t.Helper()
	script := filepath.Join(root, "hack", "deps.sh")
	runDir := filepath.Join(root, ".run", "realnode-deps")
	if _, err := run(t, 2*time.Minute, []string{"IMC_RUN_DIR=" + runDir}, "bash", script, "stop", "kafka", "cassandra", "etcd"); err != nil {
		t.Fatalf("stopping what a killed run left: %v", err)
	}
	ports := freePorts(t, ip, 7)
	env := []string{
		"IMC_RUN_DIR=" + runDir, "IMC_DEPS_ADDR=" + ip, "IMC_FRESH=1",
		"IMC_KAFKA_PORT=" + ports[0], "IMC_KAFKA_CONTROLLER_PORT=" + ports[1],
		"IMC_CASSANDRA_PORT=" + ports[2], "IMC_CASSANDRA_STORAGE_PORT=" + ports[3], "IMC_CASSANDRA_JMX_PORT=" + ports[4],
		"IMC_ETCD_PORT=" + ports[5], "IMC_ETCD_PEER_PORT=" + ports[6],
		"IMC_CASSANDRA_HEAP=1g",
	}
	t.Cleanup(func() {
		if _, err := run(t, 2*time.Minute, env, "bash", script, "stop", "kafka", "cassandra", "etcd"); err != nil {
			t.Errorf("stopping the private servers: %v", err)
		}
	})
	if _, err := run(t, 5*time.Minute, env, "bash", script, "start", "kafka", "cassandra", "etcd"); err != nil {
		t.Fatalf("starting private servers on %s: %v", ip, err)
	}
	return privateDeps{
		kafka:     net.JoinHostPort(ip, ports[0]),
		cassandra: net.JoinHostPort(ip, ports[2]),
		etcd:      net.JoinHostPort(ip, ports[5]),
	}
}

// freePorts returns n ports free on ip a moment ago, from 20000-29999 (below
// the ephemeral range, so no outgoing connection takes one meanwhile).
func freePorts(t *testing.T, ip string, n int) []string {
	t.Helper()
	var ports []string
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	start := 20000 + int(time.Now().UnixNano()%9000)
	for p := start; len(ports) < n && p < start+1000; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			_ = l.Close()
			continue
		}
		lns = append(lns, l, l2)
		ports = append(ports, strconv.Itoa(p))
	}
	if len(ports) < n {
		t.Fatalf("only %d free ports on %s", len(ports), ip)
	}
	return ports
}

// lockMachine takes the machine-wide cluster lock (one real node per host:
// the bridge, node ports and iptables chains are the host's) for the rest
// of the test, waiting up to 30 minutes for another test run to finish.
func lockMachine(t *testing.T) {
	t.Helper()
	dir := os.Getenv("IMC_CACHE_DIR")
	if dir == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatal(err)
			}
			base = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(base, "imcluster")
	}
	if err := os.MkdirAll(filepath.Join(dir, "locks"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "locks", "realnode-cluster.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Minute)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			t.Fatalf("another real-node test held %s for 30 minutes: %v", f.Name(), err)
		}
		time.Sleep(time.Second)
	}
	t.Cleanup(func() { _ = f.Close() }) // closing releases the lock
}

// stackMemory describes the memory of the whole test stack now: the RSS of
// the cluster's processes and of the private servers (by recorded pid), and
// the pods' (the kubepods memory cgroup's total_rss, cgroup v1).
func stackMemory(root string) string {
	rss := func(pidFile string) int64 {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return 0
		}
		st, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(b)), "status"))
		if err != nil {
			return 0
		}
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				return kb >> 10
			}
		}
		return 0
	}
	var parts []string
	var control, node, deps int64
	for _, n := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		control += rss(filepath.Join(root, ".run", "cluster-test", n+".pid"))
	}
	for _, n := range []string{"containerd", "kubelet", "kube-proxy"} {
		node += rss(filepath.Join(root, ".run", "cluster-test", n+".pid"))
	}
	for _, n := range []string{"kafka", "cassandra", "etcd"} {
		deps += rss(filepath.Join(root, ".run", "realnode-deps", n, "pid"))
	}
	parts = append(parts, fmt.Sprintf("control plane %d MiB", control), fmt.Sprintf("node %d MiB", node),
		fmt.Sprintf("private kafka+cassandra+etcd %d MiB", deps))
	if b, err := os.ReadFile("/sys/fs/cgroup/memory/kubepods/memory.stat"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "total_rss "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				parts = append(parts, fmt.Sprintf("pods %d MiB", n>>20))
			}
		}
	}
	return strings.Join(parts, ", ")
}
