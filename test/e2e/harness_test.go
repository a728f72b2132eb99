//go:build linux

package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/test/testdeps"
)

// binDir holds the binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "imcluster-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/imcluster")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is one isolated imcluster: its own topic, keyspace, group and etcd
// prefix, a message process and any number of push processes.
type cluster struct {
	t       *testing.T
	dir     string
	msgCfg  config.Message
	env     []string // common environment of every process
	apiURL  string
	etcd    *clientv3.Client
	users   *auth.Signer
	service *auth.Signer

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	name    string
	cmd     *exec.Cmd
	wsURL   string // push only
	metrics string
	done    chan struct{}
	log     *bytes.Buffer
}

// freeAddr is an address for a server process to listen on: not a port
// from :0, which any outgoing connection (the processes' hundreds to Kafka,
// Cassandra and etcd) may take as its local port before the process binds
// it (see testdeps.FreeAddr).
func freeAddr(t *testing.T) string { return testdeps.FreeAddr(t) }

// newCluster bootstraps and starts a message process; msgEnv (KEY=value)
// is added to that process's environment (e.g. a short IM_FEED_RETENTION).
func newCluster(t *testing.T, msgEnv ...string) *cluster {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped with -short")
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
	name := testdeps.Unique("e2e")
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
	ss, _ := auth.NewSigner(auth.KindService, keys["service"])
	c := &cluster{t: t, dir: dir, msgCfg: m, env: env, etcd: cli, users: us, service: ss, procs: map[string]*proc{}}
	t.Cleanup(c.cleanup)

	boot := exec.Command(filepath.Join(binDir, "imcluster"), "bootstrap")
	boot.Env = env
	if out, err := boot.CombinedOutput(); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	api, met := freeAddr(t), freeAddr(t)
	c.start("message-1", "message", append([]string{"IM_HTTP_ADDR=" + api, "IM_METRICS_ADDR=" + met}, msgEnv...)...)
	c.procs["message-1"].metrics = "http://" + met
	c.apiURL = "http://" + api
	c.waitReady("message-1")
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
		c.kill(p.name, syscall.SIGKILL)
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
	if a, err := mlog.NewAdmin(c.msgCfg.Kafka, "e2e-cleanup"); err == nil {
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

func (c *cluster) start(name, sub string, extra ...string) *proc {
	cmd := exec.Command(filepath.Join(binDir, "imcluster"), sub)
	cmd.Env = append(append(append([]string{}, c.env...), "IM_NODE_ID="+name), extra...)
	// Never outlive the test binary (a timeout or a crash must not leave
	// servers behind).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log := &bytes.Buffer{}
	lw := &lockedWriter{w: log}
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startPush starts a push node and waits until it is ready.
func (c *cluster) startPush(name string) *proc {
	ws, in, met := freeAddr(c.t), freeAddr(c.t), freeAddr(c.t)
	p := c.start(name, "push", "IM_HTTP_ADDR="+ws, "IM_INTERNAL_ADDR="+in, "IM_METRICS_ADDR="+met,
		"IM_MESSAGE_URL="+c.apiURL, "IM_PUSH_HEARTBEAT_INTERVAL=5s")
	p.wsURL, p.metrics = "ws://"+ws+"/", "http://"+met
	c.waitReady(name)
	return p
}

func (c *cluster) waitReady(name string) {
	c.t.Helper()
	p := c.procs[name]
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			c.t.Fatalf("%s exited:\n%s", name, tail(p.log.String(), 4000))
		default:
		}
		resp, err := http.Get(p.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("%s not ready in 60s:\n%s", name, tail(p.log.String(), 4000))
}

func (c *cluster) kill(name string, sig syscall.Signal) *proc {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
	return p
}

func (c *cluster) token(user string) string {
	tok, err := c.users.Sign(user, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

func (c *cluster) api(user, device string) *client.API {
	return &client.API{BaseURL: c.apiURL, Token: c.token(user), Device: device}
}

// device is a client with a log of what it got.
type device struct {
	*client.Client
	mu     sync.Mutex
	events []protocol.Event
	pushed []bool // parallel to events
	nodes  []string
	disc   []error
	notify chan struct{}
}

func (d *device) on(ev protocol.Event, pushed bool) {
	d.mu.Lock()
	d.events = append(d.events, ev)
	d.pushed = append(d.pushed, pushed)
	d.mu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

func (c *cluster) connect(user, dev, terminal string, urls ...string) *device {
	c.t.Helper()
	return c.connectWith(nil, user, dev, terminal, urls...)
}

// connectWith is connect with the client's config changed by mod first.
func (c *cluster) connectWith(mod func(*client.Config), user, dev, terminal string, urls ...string) *device {
	c.t.Helper()
	d := &device{notify: make(chan struct{}, 1)}
	cfg := client.Config{URLs: urls, APIURL: c.apiURL, Token: c.token(user), DeviceID: dev, Terminal: terminal,
		OnEventVia: d.on,
		OnConnect: func(w protocol.ServerFrame) {
			d.mu.Lock()
			d.nodes = append(d.nodes, w.NodeID)
			d.mu.Unlock()
			select {
			case d.notify <- struct{}{}:
			default:
			}
		},
		OnDisconnect: func(err error) { d.mu.Lock(); d.disc = append(d.disc, err); d.mu.Unlock() },
	}
	if mod != nil {
		mod(&cfg)
	}
	d.Client = client.New(cfg)
	d.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		c.t.Fatalf("%s/%s: %v", user, dev, err)
	}
	c.t.Cleanup(d.Close)
	return d
}

// await polls cond (under the device's lock) until true or the deadline.
func (d *device) await(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		d.mu.Lock()
		ok := cond()
		d.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-deadline:
			d.mu.Lock()
			defer d.mu.Unlock()
			t.Fatalf("timed out waiting for %s; events: %s", what, summarize(d.events))
		case <-d.notify:
		case <-tick.C:
		}
	}
}

// messages returns the message texts d got in conv, in seq order.
func (d *device) messages(conv string) (texts []string, dups int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := map[int64]bool{}
	var evs []protocol.Event
	for _, e := range d.events {
		if e.ConvID != conv || e.Kind != protocol.KindMessage {
			continue
		}
		if seen[e.Seq] {
			dups++
			continue
		}
		seen[e.Seq] = true
		evs = append(evs, e)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
	for _, e := range evs {
		if e.Message != nil && e.Message.Body != nil {
			texts = append(texts, e.Message.Body.Text)
		}
	}
	return texts, dups
}

func (d *device) countKind(k protocol.Kind) (n int) {
	for _, e := range d.events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func summarize(evs []protocol.Event) string {
	var b strings.Builder
	for i, e := range evs {
		if i == 30 {
			fmt.Fprintf(&b, " … (%d)", len(evs))
			break
		}
		fmt.Fprintf(&b, " %s/%s#%d", e.Kind, e.ConvID, e.Seq)
	}
	return b.String()
}

func (c *cluster) send(from, dev, to, text string) client.SendResponse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.api(from, dev).Send(ctx, client.SendRequest{To: to, ClientMsgID: testdeps.Unique("c"), Type: protocol.TypeText,
		Body: &protocol.Body{Text: text}})
	if err != nil {
		c.t.Fatalf("send %q: %v", text, err)
	}
	return res
}

// sessions returns the presence entries of user in etcd.
func (c *cluster) sessions(user string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.msgCfg.EtcdPrefix+"/push/sessions/"+user+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		c.t.Fatal(err)
	}
	return int(resp.Count)
}

func (c *cluster) nodeRegistered(node string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.msgCfg.EtcdPrefix+"/push/nodes/"+node, clientv3.WithCountOnly())
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.Count > 0
}

// leaseExpiresNoSooner returns the instant before which the lease holding
// keys cannot expire (only revoking it removes them sooner): the time its
// remaining TTL was asked plus that TTL. False when the keys are not all
// under one lease with at least a second left.
func (c *cluster) leaseExpiresNoSooner(keys ...string) (time.Time, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var lease clientv3.LeaseID
	for _, k := range keys {
		resp, err := c.etcd.Get(ctx, k)
		if err != nil {
			c.t.Fatal(err)
		}
		if len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 || (lease != 0 && clientv3.LeaseID(resp.Kvs[0].Lease) != lease) {
			return time.Time{}, false
		}
		lease = clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	asked := time.Now() // the server reads the remaining TTL after this
	ttl, err := c.etcd.TimeToLive(ctx, lease)
	if err != nil {
		c.t.Fatal(err)
	}
	// etcd truncates the remaining TTL to whole seconds: never more than left.
	left := min(ttl.TTL, ttl.GrantedTTL)
	if left < 1 {
		return time.Time{}, false
	}
	return asked.Add(time.Duration(left) * time.Second), true
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
