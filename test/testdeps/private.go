package testdeps

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Private is a dependency server of one test's own, started with the
// project's hack/deps.sh on free ports with its data under t.TempDir, so the
// test may stop and restart it without touching the shared servers. It is
// stopped when the test ends.
type Private struct {
	// Endpoints are the client addresses (host:port).
	Endpoints []string

	component string
	script    string
	runDir    string
	env       []string
	mu        sync.Mutex
}

// PrivateKafka starts a private single-node Kafka (broker and controller),
// or skips/fails t when the tools to run it are missing.
func PrivateKafka(t testing.TB) *Private {
	t.Helper()
	return startPrivate(t, "kafka", nil, "IMC_KAFKA_PORT", "IMC_KAFKA_CONTROLLER_PORT")
}

// PrivateEtcd starts a private single-member etcd (hack/deps.sh's, so
// with its settings), or skips/fails t when it cannot be built or run.
func PrivateEtcd(t testing.TB) *Private {
	t.Helper()
	return startPrivate(t, "etcd", nil, "IMC_ETCD_PORT", "IMC_ETCD_PEER_PORT")
}

// PrivateCassandra starts a private single-node Cassandra, or skips/fails t
// when the tools to run it are missing. Unlike the shared one it is made
// to survive Kill: it runs without -Dcassandra.unsafesystem (which skips
// flushing schema changes, so a keyspace created shortly before would be
// lost) and with commitlog_sync: batch (periodic, the shared one's setting,
// acknowledges writes up to 10 s before they are synced, and a killed
// Cassandra replays its commit log only up to the last sync).
func PrivateCassandra(t testing.TB) *Private {
	t.Helper()
	return PrivateCassandraWith(t)
}

// PrivateCassandraWith is PrivateCassandra with hack/deps.sh settings
// (IMC_CASSANDRA_*=value) that override its durable defaults, e.g. to show
// what a kill -9 does to a node run without them.
func PrivateCassandraWith(t testing.TB, env ...string) *Private {
	t.Helper()
	env = append([]string{"IMC_CASSANDRA_UNSAFE_SYSTEM=false", "IMC_CASSANDRA_COMMITLOG_SYNC=batch"}, env...)
	return startPrivate(t, "cassandra", env,
		"IMC_CASSANDRA_PORT", "IMC_CASSANDRA_STORAGE_PORT", "IMC_CASSANDRA_JMX_PORT")
}

// startPrivate picks a free port for each of portVars (the first is the
// client port) and runs hack/deps.sh start component with them and env.
func startPrivate(t testing.TB, component string, env []string, portVars ...string) *Private {
	t.Helper()
	script := depsScript(t)
	if script == "" {
		return nil
	}
	for _, tool := range []string{"bash", "java", "mvn", "setsid", "flock"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, tool+" not found in PATH (needed to run a private "+component+")")
			return nil
		}
	}
	p := &Private{component: component, script: script, runDir: t.TempDir()}
	p.env = append(append(os.Environ(), env...), "IMC_RUN_DIR="+p.runDir)
	ports := freePorts(t, len(portVars))
	for i, v := range portVars {
		p.env = append(p.env, v+"="+strconv.Itoa(ports[i]))
	}
	p.Endpoints = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))}
	// Registered before starting: a server that started but failed its
	// readiness wait is stopped too (deps.sh stop is a no-op otherwise).
	t.Cleanup(func() {
		if err := p.run("stop", false); err != nil {
			t.Logf("stopping private %s: %v", component, err)
		}
	})
	if err := p.run("start", true); err != nil {
		t.Fatalf("starting private %s: %v", component, err)
	}
	return p
}

// Stop stops the server (SIGTERM to its process group, then SIGKILL after
// 30 s) and waits until its port is free.
func (p *Private) Stop() error { return p.run("stop", false) }

// Start starts the stopped server again on the same ports and data, and
// waits until it answers by its own protocol.
func (p *Private) Start() error { return p.run("start", false) }

// Kill crashes the server: SIGKILL to its process group (hack/deps.sh runs
// each server in a session of its own), then waits until the process is
// gone. Start brings it back on the same data.
func (p *Private) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pid, err := p.pid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("while killing private %s (pid %d): %w", p.component, pid, err)
	}
	// Not our child (setsid detached it), so poll until it is gone or a
	// zombie (init may reap it late; it holds no socket any more).
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil && !zombie(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("private %s (pid %d) still alive 30s after SIGKILL", p.component, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Pause freezes the server (SIGSTOP to its process group): it keeps its
// connections and ports but answers nothing, as a hung broker or a
// partitioned node does, until Resume. It returns once the kernel shows the
// process stopped (a signal is delivered asynchronously: a request sent
// right after kill(2) returned could otherwise still be served).
func (p *Private) Pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	p.mu.Lock()
	pid, err := p.pid()
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if err := AwaitStopped(pid, 10*time.Second); err != nil {
		return fmt.Errorf("private %s: %w", p.component, err)
	}
	return nil
}

// AwaitStopped waits until the kernel shows pid stopped (state T), as it
// does some time after SIGSTOP was sent: kill(2) returns before the
// process stops, and a request sent meanwhile may still be served.
func AwaitStopped(pid int, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; {
		if processState(pid) == 'T' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d not stopped %v after SIGSTOP", pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// processState is the state letter of /proc/PID/stat (R, S, T, Z, …), or
// 0 when it cannot be read.
func processState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// Resume lets a paused server run again (SIGCONT).
func (p *Private) Resume() error { return p.signal(syscall.SIGCONT) }

func (p *Private) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pid, err := p.pid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		return fmt.Errorf("while sending %v to private %s (pid %d): %w", sig, p.component, pid, err)
	}
	return nil
}

// pid reads the server's pid file (the leader of its process group).
func (p *Private) pid() (int, error) {
	b, err := os.ReadFile(filepath.Join(p.runDir, p.component, "pid"))
	if err != nil {
		return 0, fmt.Errorf("while reading the pid of private %s: %w", p.component, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("private %s: bad pid file %q", p.component, b)
	}
	return pid, nil
}

// zombie reports whether pid has exited and awaits its reaping (or is
// gone).
func zombie(pid int) bool {
	st := processState(pid)
	return st == 0 || st == 'Z' || st == 'X'
}

// Restart stops and starts the server, keeping its data.
func (p *Private) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.Start()
}

func (p *Private) run(action string, fresh bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command("bash", p.script, action, p.component)
	cmd.Env = append(p.env[:len(p.env):len(p.env)], "IMC_FRESH=0")
	if fresh {
		// Only the first start wipes (an empty run dir anyway); a restart
		// must keep the data.
		cmd.Env[len(cmd.Env)-1] = "IMC_FRESH=1"
	}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("hack/deps.sh %s %s after %s: %w\n%s", action, p.component, time.Since(t0).Round(time.Millisecond), err, out)
	}
	return nil
}

// depsScript finds hack/deps.sh above the working directory (go test runs
// in the package's folder inside the repository).
func depsScript(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		s := filepath.Join(dir, "hack", "deps.sh")
		if _, err := os.Stat(s); err == nil {
			return s
		}
		up := filepath.Dir(dir)
		if up == dir || strings.TrimSpace(up) == "" {
			missing(t, "hack/deps.sh not found above the working directory")
			return ""
		}
		dir = up
	}
}

// freePorts returns n distinct ports that were free a moment ago (listened
// on and closed) and that no other test process on this machine picked in
// the last portClaimTTL (claimPort): the test packages run side by side and
// pick from the same range, and two of them picking one port made a
// server's start fail with "address already in use" (seen in CI). Anything
// else could still take a port in between; start then fails with that
// clear message.
//
// They are picked below the kernel's ephemeral range: a port from that
// range (what listening on :0 gives) may become the local port of any
// outgoing connection — the test processes open hundreds — while the
// server's JVM starts, or between Stop and Start, and a listener cannot
// bind a port an established connection holds.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := PickPorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// PickPorts is freePorts for programs that are not tests (the fault suite,
// test/chaos): n distinct ports below the ephemeral range, free a moment
// ago and claimed against the other test processes of this machine.
func PickPorts(n int) ([]int, error) {
	lo, hi := privatePortRange()
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("no %d free ports in [%d, %d) after %d tries", n, lo, hi, tries)
		}
		p := lo + mrand.IntN(hi-lo)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		if !claimPort(p) {
			_ = ln.Close()
			continue // another test process picked it lately
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	return ports, nil
}

// privatePortRange is where private servers' ports are picked: [lo, hi),
// below the ephemeral range of /proc/sys/net/ipv4/ip_local_port_range
// (32768-60999 by default) and above the well-known and common service ports.
func privatePortRange() (lo, hi int) {
	lo, hi = 20000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	if eph, err := strconv.Atoi(f[0]); err == nil && eph > lo+1000 {
		hi = eph
	} else if err == nil {
		// An unusual range starting low: pick above it instead.
		if top, err := strconv.Atoi(f[1]); err == nil && top < 64000 {
			lo, hi = top+1, 65536
		}
	}
	return lo, hi
}
