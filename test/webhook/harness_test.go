//go:build linux

package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/webhook"
	"github.com/imcluster/imcluster/services/webhook/wire"
	"github.com/imcluster/imcluster/test/testdeps"
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "imcluster-webhook-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/imcluster")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "webhook tests: building imcluster:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is one isolated imcluster (own topic, keyspace, groups, etcd
// prefix) with message and push processes started from the binary.
type cluster struct {
	t          *testing.T
	cfg        config.Message
	env        []string
	etcd       *clientv3.Client
	users      *auth.Signer
	svc        *auth.Signer
	secret     []byte
	secretFile string

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	name    string
	cmd     *exec.Cmd
	api     string // message: http://addr
	ws      string // push: ws://addr/
	metrics string
	done    chan struct{}
	log     *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 6000 {
		s = s[len(s)-6000:]
	}
	return s
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real processes; skipped with -short")
	}
	kafka, cass, etcdEPs := testdeps.Kafka(t), testdeps.Cassandra(t), testdeps.Etcd(t)
	dir := t.TempDir()
	keys := map[string][]byte{}
	for _, k := range []string{"user", "service", "internal", "webhook"} {
		b := []byte(testdeps.Unique(k + "_key_material_padding_padding"))
		keys[k] = b
		if err := os.WriteFile(filepath.Join(dir, k+".key"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	name := testdeps.Unique("wh")
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
	env = append(env, config.EnvPresenceLeaseTTL+"=3s", config.EnvShutdownGrace+"=4s")
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcdEPs, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	us, _ := auth.NewSigner(auth.KindUser, keys["user"])
	ss, _ := auth.NewSigner(auth.KindService, keys["service"])
	c := &cluster{t: t, cfg: m, env: env, etcd: cli, users: us, svc: ss, secret: keys["webhook"],
		secretFile: filepath.Join(dir, "webhook.key"), procs: map[string]*proc{}}
	t.Cleanup(c.cleanup)
	boot := exec.Command(filepath.Join(binDir, "imcluster"), "bootstrap")
	boot.Env = env
	if out, err := boot.CombinedOutput(); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
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
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	if c.t.Failed() {
		for _, p := range procs {
			c.t.Logf("--- log of %s (tail) ---\n%s", p.name, p.log.String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = c.etcd.Delete(ctx, c.cfg.EtcdPrefix, clientv3.WithPrefix())
	_ = c.etcd.Close()
	if a, err := mlog.NewAdmin(c.cfg.Kafka, "wh-cleanup"); err == nil {
		for _, tp := range []string{c.cfg.Kafka.Topic, c.cfg.Kafka.DLQTopic, webhook.EventsTopic(c.cfg.Kafka.Topic), webhook.DeadLetterTopic(c.cfg.Kafka.Topic)} {
			_ = a.DeleteTopic(tp)
		}
		_ = a.DeleteGroup(c.cfg.Kafka.Group)
		_ = a.DeleteGroup(c.cfg.Kafka.Group + "-webhook")
		a.Close()
	}
	if err := store.DropKeyspace(c.cfg.Cassandra, c.cfg.Cassandra.Keyspace); err != nil {
		c.t.Logf("drop keyspace: %v", err)
	}
}

func (c *cluster) start(name, sub string, extra ...string) *proc {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "imcluster"), sub)
	cmd.Env = append(append(append([]string{}, c.env...), "IM_NODE_ID="+name), extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: &lockedBuf{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p
}

// startMessage starts a message process with the webhook environment hook
// (KEY=value; IM_WEBHOOK_SECRET_FILE is added) and waits until it is ready
// and, when wantWebhook, its dispatcher consumes.
func (c *cluster) startMessage(name string, wantWebhook bool, hook ...string) *proc {
	c.t.Helper()
	api, met := testdeps.FreeAddr(c.t), testdeps.FreeAddr(c.t)
	p := c.start(name, "message", append([]string{"IM_HTTP_ADDR=" + api, "IM_METRICS_ADDR=" + met,
		config.EnvWebhookSecretFile + "=" + c.secretFile}, hook...)...)
	p.api, p.metrics = "http://"+api, "http://"+met
	c.waitReady(p, func(body string) bool { return !wantWebhook || strings.Contains(body, "webhook: ok") })
	return p
}

func (c *cluster) startPush(name string, msg *proc) *proc {
	c.t.Helper()
	ws, in, met := testdeps.FreeAddr(c.t), testdeps.FreeAddr(c.t), testdeps.FreeAddr(c.t)
	p := c.start(name, "push", "IM_HTTP_ADDR="+ws, "IM_INTERNAL_ADDR="+in, "IM_METRICS_ADDR="+met,
		"IM_MESSAGE_URL="+msg.api, "IM_PUSH_HEARTBEAT_INTERVAL=5s")
	p.ws, p.metrics = "ws://"+ws+"/", "http://"+met
	c.waitReady(p, nil)
	return p
}

func (c *cluster) waitReady(p *proc, extra func(body string) bool) {
	c.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			c.t.Fatalf("%s exited:\n%s", p.name, p.log.String())
		default:
		}
		if resp, err := http.Get(p.metrics + "/readyz"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if resp.StatusCode == 200 && (extra == nil || extra(last)) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("%s not ready in 90s (/readyz: %s):\n%s", p.name, last, p.log.String())
}

func (c *cluster) token(user string) string {
	tok, err := c.users.Sign(user, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

func (c *cluster) api(msg *proc, user, device string) *client.API {
	return &client.API{BaseURL: msg.api, Token: c.token(user), Device: device}
}

// send sends a message and returns the answer or the API error.
func (c *cluster) send(msg *proc, from, to string, typ protocol.MessageType, body *protocol.Body) (client.SendResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.api(msg, from, from+"-dev").Send(ctx, client.SendRequest{To: to, ClientMsgID: testdeps.Unique("c"), Type: typ, Body: body, Attempt: 1})
}

// device is a connected client with a log of its events.
type device struct {
	*client.Client
	mu     sync.Mutex
	events []protocol.Event
	pushed []bool
}

func (c *cluster) connect(msg, push *proc, user, dev string) *device {
	c.t.Helper()
	d := &device{}
	d.Client = client.New(client.Config{URLs: []string{push.ws}, APIURL: msg.api, Token: c.token(user), DeviceID: dev, Terminal: "ios",
		OnEventVia: func(ev protocol.Event, pushed bool) {
			d.mu.Lock()
			d.events = append(d.events, ev)
			d.pushed = append(d.pushed, pushed)
			d.mu.Unlock()
		}})
	d.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		c.t.Fatalf("%s/%s: %v", user, dev, err)
	}
	c.t.Cleanup(d.Close)
	return d
}

// event returns the first event matching f and whether it was pushed.
func (d *device) event(f func(protocol.Event) bool) (protocol.Event, bool, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, e := range d.events {
		if f(e) {
			return e, d.pushed[i], true
		}
	}
	return protocol.Event{}, false, false
}

func (c *cluster) sessions(user string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.cfg.EtcdPrefix+"/push/sessions/"+user+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		c.t.Fatal(err)
	}
	return int(resp.Count)
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; !cond(); wait = min(2*wait, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

// receiver is a business back end: pkg/sdk's WebhookHandler behind a
// switch that can make it fail, with a record of what it accepted.
type receiver struct {
	srv     *httptest.Server
	handler *sdk.WebhookHandler

	mu         sync.Mutex
	failing    bool                        // answer 503 to every asynchronous event
	permanent  map[string]bool             // event IDs answered 400 (not retryable)
	attempts   map[string]int              // delivery attempts per event ID
	accepted   map[string]sdk.WebhookEvent // by ID
	dups       int                         // accepted again (at least once)
	order      []string                    // IDs in acceptance order
	beforeSend func(sdk.BeforeSend) (sdk.BeforeSendAnswer, time.Duration)
	captured   []capture // raw signed requests, for replay
	badSigs    int       // requests the handler refused (401)
}

type capture struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, secret []byte) *receiver {
	r := &receiver{permanent: map[string]bool{}, attempts: map[string]int{}, accepted: map[string]sdk.WebhookEvent{}}
	r.handler = &sdk.WebhookHandler{Secrets: [][]byte{secret},
		OnEvent: func(_ context.Context, ev sdk.WebhookEvent) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if _, ok := r.accepted[ev.ID]; ok {
				r.dups++
				return nil
			}
			r.accepted[ev.ID] = ev
			r.order = append(r.order, ev.ID)
			return nil
		},
		OnBeforeSend: func(ctx context.Context, req sdk.BeforeSend) sdk.BeforeSendAnswer {
			r.mu.Lock()
			f := r.beforeSend
			r.mu.Unlock()
			if f == nil {
				return sdk.BeforeSendAnswer{Action: sdk.ActionAllow}
			}
			a, delay := f(req)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
			return a
		}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 4<<20))
	ev := req.Header.Get(wire.HeaderEvent)
	id := req.Header.Get(wire.HeaderIdempotencyKey)
	r.mu.Lock()
	if len(r.captured) < 200 {
		r.captured = append(r.captured, capture{header: req.Header.Clone(), body: body})
	}
	if ev != wire.EventBeforeSend {
		r.attempts[id]++
		if r.failing {
			r.mu.Unlock()
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if r.permanent[id] {
			r.mu.Unlock()
			http.Error(w, "never", http.StatusBadRequest)
			return
		}
	}
	r.mu.Unlock()
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := &statusRecorder{ResponseWriter: w, status: 200}
	r.handler.ServeHTTP(rec, req)
	if rec.status == http.StatusUnauthorized {
		r.mu.Lock()
		r.badSigs++
		r.mu.Unlock()
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(c int) { s.status = c; s.ResponseWriter.WriteHeader(c) }

func (r *receiver) setFailing(v bool) { r.mu.Lock(); r.failing = v; r.mu.Unlock() }

// get returns the accepted event with id.
func (r *receiver) get(id string) (sdk.WebhookEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev, ok := r.accepted[id]
	return ev, ok
}

func (r *receiver) await(t *testing.T, timeout time.Duration, ids ...string) map[string]sdk.WebhookEvent {
	t.Helper()
	out := map[string]sdk.WebhookEvent{}
	eventually(t, fmt.Sprintf("webhook events %v", ids), timeout, func() bool {
		for _, id := range ids {
			ev, ok := r.get(id)
			if !ok {
				return false
			}
			out[id] = ev
		}
		return true
	})
	return out
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }
