//go:build linux

package browser

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/test/testdeps"
)

// binDir holds cmd/imcluster and cmd/imctl, built once by TestMain; root is
// the repository.
var binDir, root string

func TestMain(m *testing.M) {
	flag.Parse()
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Join(filepath.Dir(file), "..", "..")
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "imcluster-browser-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/imcluster", "./cmd/imctl")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "browser: building binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is one isolated imcluster: its own topic, keyspace, group and etcd
// prefix, a message process and push processes.
type cluster struct {
	t       *testing.T
	dir     string
	msgCfg  config.Message
	env     []string
	apiURL  string
	userKey string // path of the user key file
	etcd    *clientv3.Client
	users   *auth.Signer

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	name    string
	sub     string
	extra   []string
	cmd     *exec.Cmd
	wsURL   string // push only
	metrics string
	done    chan struct{}
	log     *lockedBuffer
}

// newCluster bootstraps and starts a message process.
func newCluster(t *testing.T) *cluster {
	if testing.Short() {
		t.Skip("runs real processes; skipped with -short")
	}
	kafka, cass, etcdEPs := testdeps.Kafka(t), testdeps.Cassandra(t), testdeps.Etcd(t)
	dir := t.TempDir()
	keys := map[string][]byte{}
	for _, k := range []string{"user", "service", "internal"} {
		b := []byte(testdeps.Unique(k + "_key_material_padding_padding"))
		keys[k] = b
		if err := os.WriteFile(filepath.Join(dir, k+".key"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	name := testdeps.Unique("sdk")
	m, _ := config.LoadMessage(func(string) string { return "" })
	m.Kafka.Brokers, m.Cassandra.Hosts, m.EtcdEndpoints = kafka, cass, etcdEPs
	m.Kafka.Topic, m.Kafka.DLQTopic, m.Kafka.Group = name, name+"_dlq", name+"_g"
	m.Kafka.Partitions = 3
	m.Cassandra.Keyspace = name
	m.EtcdPrefix = "/" + name
	m.UserKeyFile = filepath.Join(dir, "user.key")
	m.ServiceKeyFile = filepath.Join(dir, "service.key")
	m.InternalKeyFile = filepath.Join(dir, "internal.key")
	env := os.Environ()
	for k, v := range m.Env() {
		env = append(env, k+"="+v)
	}
	env = append(env, config.EnvPresenceLeaseTTL+"=3s", config.EnvShutdownGrace+"=6s")
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcdEPs, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	us, _ := auth.NewSigner(auth.KindUser, keys["user"])
	c := &cluster{t: t, dir: dir, msgCfg: m, env: env, etcd: cli, users: us, userKey: m.UserKeyFile, procs: map[string]*proc{}}
	t.Cleanup(c.cleanup)

	boot := exec.Command(filepath.Join(binDir, "imcluster"), "bootstrap")
	boot.Env = env
	if out, err := boot.CombinedOutput(); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	api, met := testdeps.FreeAddr(t), testdeps.FreeAddr(t)
	p := c.start("message-1", "message", "IM_HTTP_ADDR="+api, "IM_METRICS_ADDR="+met)
	p.metrics = "http://" + met
	c.apiURL = "http://" + api
	c.waitReady(p)
	return c
}

func (c *cluster) cleanup() {
	c.mu.Lock()
	procs := make([]*proc, 0, len(c.procs))
	for _, p := range c.procs {
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		p.signal(syscall.SIGKILL)
		<-p.done
	}
	if c.t.Failed() {
		for _, p := range procs {
			c.t.Logf("--- log of %s (tail) ---\n%s", p.name, tail(p.log.String(), 4000))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = c.etcd.Delete(ctx, c.msgCfg.EtcdPrefix, clientv3.WithPrefix())
	_ = c.etcd.Close()
	if a, err := mlog.NewAdmin(c.msgCfg.Kafka, "sdk-cleanup"); err == nil {
		_ = a.DeleteTopic(c.msgCfg.Kafka.Topic)
		_ = a.DeleteTopic(c.msgCfg.Kafka.DLQTopic)
		a.Close()
	}
	if err := store.DropKeyspace(c.msgCfg.Cassandra, c.msgCfg.Cassandra.Keyspace); err != nil {
		c.t.Logf("drop keyspace: %v", err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// start runs `imcluster sub` (or restarts the stopped process name with
// the same arguments when sub is "").
func (c *cluster) start(name, sub string, extra ...string) *proc {
	c.mu.Lock()
	old := c.procs[name]
	c.mu.Unlock()
	var log *lockedBuffer
	if old != nil {
		sub, extra, log = old.sub, old.extra, old.log
	} else {
		log = &lockedBuffer{}
	}
	cmd := exec.Command(filepath.Join(binDir, "imcluster"), sub)
	cmd.Env = append(append(append([]string{}, c.env...), "IM_NODE_ID="+name), extra...)
	// Never outlive the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &proc{name: name, sub: sub, extra: extra, cmd: cmd, done: make(chan struct{}), log: log}
	if old != nil {
		p.wsURL, p.metrics = old.wsURL, old.metrics
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// startPush starts a push node and waits until it is ready.
func (c *cluster) startPush(name string) *proc {
	ws, in, met := testdeps.FreeAddr(c.t), testdeps.FreeAddr(c.t), testdeps.FreeAddr(c.t)
	p := c.start(name, "push", "IM_HTTP_ADDR="+ws, "IM_INTERNAL_ADDR="+in, "IM_METRICS_ADDR="+met,
		"IM_MESSAGE_URL="+c.apiURL, "IM_PUSH_HEARTBEAT_INTERVAL=5s")
	p.wsURL, p.metrics = "ws://"+ws+"/", "http://"+met
	c.waitReady(p)
	return p
}

func (c *cluster) proc(name string) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// stop sends SIGTERM (a push node drains its sessions) and waits for the exit.
func (c *cluster) stop(name string) error {
	p := c.proc(name)
	if p == nil {
		return fmt.Errorf("no process %q", name)
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		p.signal(syscall.SIGKILL)
		return fmt.Errorf("%s did not exit within 30 s of SIGTERM", name)
	}
}

// restart starts a stopped process again on the same addresses.
func (c *cluster) restart(name string) error {
	p := c.proc(name)
	if p == nil {
		return fmt.Errorf("no process %q", name)
	}
	select {
	case <-p.done:
	default:
		return fmt.Errorf("%s is running", name)
	}
	return c.ready(c.start(name, ""))
}

func (c *cluster) waitReady(p *proc) {
	c.t.Helper()
	if err := c.ready(p); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) ready(p *proc) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited:\n%s", p.name, tail(p.log.String(), 4000))
		default:
		}
		resp, err := http.Get(p.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready in 60s:\n%s", p.name, tail(p.log.String(), 4000))
}

// control serves what a test's clients (node, the browser) ask of the
// harness: user tokens (GET /token?user=U&ttl_s=N) and stopping or
// restarting a process (POST /stop?proc=P, /restart?proc=P).
func (c *cluster) control() string {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		ttl := time.Hour
		if s := r.URL.Query().Get("ttl_s"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				http.Error(w, "bad ttl_s", http.StatusBadRequest)
				return
			}
			ttl = time.Duration(n) * time.Second
		}
		tok, err := c.users.Sign(r.URL.Query().Get("user"), ttl)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write([]byte(tok))
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		if err := c.stop(r.URL.Query().Get("proc")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		if err := c.restart(r.URL.Query().Get("proc")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	l, err := net.Listen("tcp", testdeps.FreeAddr(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	c.t.Cleanup(func() { _ = srv.Close(); <-served })
	return "http://" + l.Addr().String()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
