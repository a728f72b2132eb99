package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imcluster/imcluster/test/testdeps"
)

// cluster is the suite's own stack: the dependency servers of hack/deps.sh
// under its own IMC_RUN_DIR (started by hack/chaos.sh) and four tier
// processes started here.
type cluster struct {
	root, bin, out string
	depsDir        string // IMC_RUN_DIR of the suite's dependencies
	env            []string
	userKey        []byte
	lb             *balancer

	mu    sync.Mutex
	procs map[string]*proc
	order []string
}

// proc is one tier process (message-N, push-N). Its addresses stay the
// same across restarts, like a pod's Service name.
type proc struct {
	name, sub                   string
	httpAddr, internal, metrics string
	cmd                         *exec.Cmd
	done                        chan struct{}
	starts                      int
}

func (p *proc) pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) alive() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// newCluster prepares keys and the environment of the tier processes; the
// dependencies must be running (hack/chaos.sh started them).
func newCluster(root, bin, out string) (*cluster, error) {
	depsDir := os.Getenv("IMC_RUN_DIR")
	if depsDir == "" || !strings.Contains(depsDir, "chaos") {
		return nil, fmt.Errorf("IMC_RUN_DIR=%q: run through hack/chaos.sh (the suite's own dependencies, never the shared ones)", depsDir)
	}
	kafka, cass, etcd := os.Getenv("IMC_KAFKA_PORT"), os.Getenv("IMC_CASSANDRA_PORT"), os.Getenv("IMC_ETCD_PORT")
	for _, p := range []string{kafka, cass, etcd} {
		if p == "" || p == "9092" || p == "9042" || p == "2379" {
			return nil, fmt.Errorf("dependency ports %s/%s/%s: the suite never uses the shared servers' ports", kafka, cass, etcd)
		}
	}
	c := &cluster{root: root, bin: bin, out: out, depsDir: depsDir, procs: map[string]*proc{}}
	keys := filepath.Join(out, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	for _, k := range []string{"user", "service", "internal"} {
		b := make([]byte, 48)
		f, err := os.Open("/dev/urandom")
		if err != nil {
			return nil, err
		}
		_, err = io.ReadFull(f, b)
		f.Close()
		if err != nil {
			return nil, err
		}
		key := []byte(fmt.Sprintf("%x", b))
		if k == "user" {
			c.userKey = key
		}
		if err := os.WriteFile(filepath.Join(keys, k+".key"), key, 0o600); err != nil {
			return nil, err
		}
	}
	tag := time.Now().UTC().Format("150405")
	c.env = append(os.Environ(),
		"IM_ETCD_ENDPOINTS=127.0.0.1:"+etcd, "IM_ETCD_PREFIX=/imcluster/chaos-"+tag,
		"IM_KAFKA_BROKERS=127.0.0.1:"+kafka, "IM_KAFKA_TOPIC=im.chaos."+tag, "IM_KAFKA_DLQ_TOPIC=im.chaos."+tag+".dlq",
		"IM_KAFKA_PARTITIONS=6", "IM_KAFKA_REPLICATION_FACTOR=1", "IM_KAFKA_GROUP=im-chaos-"+tag,
		"IM_CASSANDRA_HOSTS=127.0.0.1:"+cass, "IM_CASSANDRA_KEYSPACE=imcluster_chaos_"+tag, "IM_CASSANDRA_REPLICATION=SimpleStrategy:1",
		"IM_AUTH_USER_KEY_FILE="+filepath.Join(keys, "user.key"), "IM_AUTH_SERVICE_KEY_FILE="+filepath.Join(keys, "service.key"),
		"IM_AUTH_INTERNAL_KEY_FILE="+filepath.Join(keys, "internal.key"),
		"IM_PRESENCE_LEASE_TTL="+leaseTTL.String(), "IM_SHUTDOWN_GRACE=5s")
	lb, err := newBalancer()
	if err != nil {
		return nil, err
	}
	c.lb = lb
	// The processes' ports: distinct, below the ephemeral range (a port
	// listening on :0 gives may be handed out again, to another process's
	// :0 or to an outgoing connection, before its server binds it — seen
	// in CI as two processes given one port), and the same across restarts.
	names := []string{"message-1", "message-2", "push-1", "push-2"}
	ports, err := testdeps.PickPorts(3 * len(names))
	if err != nil {
		return nil, fmt.Errorf("while picking the processes' ports: %w", err)
	}
	for _, n := range names {
		p := &proc{name: n, sub: strings.SplitN(n, "-", 2)[0]}
		for _, a := range []*string{&p.httpAddr, &p.internal, &p.metrics} {
			*a, ports = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), ports[1:]
		}
		c.procs[n] = p
		c.order = append(c.order, n)
		if p.sub == "message" {
			lb.add(p)
		}
	}
	return c, nil
}

// bootstrap creates the topics and the schema.
func (c *cluster) bootstrap(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, c.bin, "bootstrap")
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(c.out, "bootstrap.log"), out, 0o644)
	if err != nil {
		return fmt.Errorf("while bootstrapping: %w: %s", err, tail(out))
	}
	return nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// start runs a tier process (again); it dies with this process.
func (c *cluster) start(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.procs[name]
	if p.alive() {
		return nil
	}
	lf, err := os.OpenFile(filepath.Join(c.out, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(lf, "\n=== chaos: start %d of %s at %s ===\n", p.starts, name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, p.sub)
	cmd.Env = append(append([]string{}, c.env...), "IM_NODE_ID=chaos-"+name,
		"IM_HTTP_ADDR="+p.httpAddr, "IM_INTERNAL_ADDR="+p.internal, "IM_METRICS_ADDR="+p.metrics,
		"IM_MESSAGE_URL=http://"+c.lb.addr)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("while starting %s: %w", name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	done := p.done
	go func() { _ = cmd.Wait(); lf.Close(); close(done) }()
	return nil
}

// signal sends sig to a tier process this suite started (by its pid).
func (c *cluster) signal(name string, sig syscall.Signal) error {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if !p.alive() {
		return fmt.Errorf("%s is not running", name)
	}
	if err := syscall.Kill(p.pid(), sig); err != nil {
		return fmt.Errorf("while signalling %s (pid %d): %w", name, p.pid(), err)
	}
	if sig == syscall.SIGKILL {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("%s (pid %d) did not exit 10 s after SIGKILL", name, p.pid())
		}
	}
	if sig == syscall.SIGSTOP {
		return awaitState(p.pid(), "T", 5*time.Second)
	}
	return nil
}

// stopAll ends every tier process (SIGCONT first: a stopped one cannot die).
func (c *cluster) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.alive() {
			_ = syscall.Kill(p.pid(), syscall.SIGCONT)
			_ = syscall.Kill(p.pid(), syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// readyOne asks a process's /readyz.
var readyHTTP = &http.Client{Timeout: time.Second}

func readyOne(p *proc) bool {
	resp, err := readyHTTP.Get("http://" + p.metrics + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// awaitReady waits until every tier process answers /readyz with 200.
func (c *cluster) awaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var notReady []string
		for _, n := range c.order {
			if !readyOne(c.procs[n]) {
				notReady = append(notReady, n)
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %s", timeout, strings.Join(notReady, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// --- the dependency servers (hack/deps.sh, the suite's own instances) ---

// depPID is the pid hack/deps.sh recorded for component, checked to be
// this suite's server: its command line names the suite's run directory.
func (c *cluster) depPID(component string) (int, error) {
	b, err := os.ReadFile(filepath.Join(c.depsDir, component, "pid"))
	if err != nil {
		return 0, fmt.Errorf("while reading %s's pid: %w", component, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s's pid file: %w", component, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, fmt.Errorf("%s (pid %d) is not running: %w", component, pid, err)
	}
	if !strings.Contains(string(cmdline), filepath.Join(c.depsDir, component)) {
		return 0, fmt.Errorf("pid %d does not name %s: not the suite's %s; refusing to signal it", pid, c.depsDir, component)
	}
	return pid, nil
}

// signalDep signals the suite's own dependency server (its process group:
// hack/deps.sh starts each in a session of its own).
func (c *cluster) signalDep(component string, sig syscall.Signal) error {
	pid, err := c.depPID(component)
	if err != nil {
		return err
	}
	target := pid
	if pg, err := syscall.Getpgid(pid); err == nil && pg == pid {
		target = -pid
	}
	if err := syscall.Kill(target, sig); err != nil {
		return fmt.Errorf("while signalling %s (pid %d): %w", component, pid, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		return awaitState(pid, "T", 5*time.Second)
	}
	return nil
}

// restartDep runs hack/deps.sh start COMPONENT (the restart logic of issue
// 11 item 1: a killed server still exiting is waited out) and returns
// once the server is ready by its own protocol.
func (c *cluster) restartDep(ctx context.Context, component string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.root, "hack", "deps.sh"), "start", component)
	cmd.Env = os.Environ() // hack/chaos.sh's IMC_RUN_DIR and ports
	out, err := cmd.CombinedOutput()
	f, _ := os.OpenFile(filepath.Join(c.out, "deps-restarts.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if f != nil {
		_, _ = f.Write(out)
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("hack/deps.sh start %s: %w: %s", component, err, tail(out))
	}
	return nil
}

// contDeps resumes any stopped dependency (cleanup).
func (c *cluster) contDeps() {
	for _, d := range []string{"kafka", "cassandra", "etcd"} {
		_ = c.signalDep(d, syscall.SIGCONT)
	}
}

// awaitState waits until the kernel shows pid in state st (T: stopped).
func awaitState(pid int, st string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "State:" && f[1] == st {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("pid %d not in state %s after %v", pid, st, timeout)
}
