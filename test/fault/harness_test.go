package fault

import (
	"bytes"
	"context"
	"net/http"
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
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/route"
	"github.com/imcluster/imcluster/test/testdeps"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// TestMain removes the cmd/imcluster build when the tests are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// imclusterBin builds cmd/imcluster once per test binary.
func imclusterBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imcluster-fault-bin")
		if err != nil {
			binErr = err
			return
		}
		binDir = dir
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/imcluster")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			t.Logf("%s", out)
			return
		}
		binPath = filepath.Join(dir, "imcluster")
	})
	if binErr != nil {
		t.Fatalf("building cmd/imcluster: %v", binErr)
	}
	return binPath
}

// pushWorld is push processes under a unique etcd prefix, with a presence
// cache and a router in the test process playing the message tier.
type pushWorld struct {
	t        *testing.T
	dir      string
	etcdEPs  []string
	prefix   string
	cli      *clientv3.Client
	cache    *presence.Cache
	router   *route.Router
	users    *auth.Signer
	internal []byte
	env      []string

	mu    sync.Mutex
	procs map[string]*pushProc
}

type pushProc struct {
	name, wsURL, metrics string
	cmd                  *exec.Cmd
	done                 chan struct{}
	log                  *lockedBuffer
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
	s := l.b.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// newPushWorld prepares keys, an etcd prefix (on etcdEPs, or the shared
// etcd when nil), the cache and the router; extra env goes to every push
// process.
func newPushWorld(t *testing.T, etcdEPs []string, extra ...string) *pushWorld {
	t.Helper()
	if testing.Short() {
		t.Skip("runs push processes")
	}
	if etcdEPs == nil {
		etcdEPs = testdeps.Etcd(t)
	}
	bin := imclusterBin(t)
	_ = bin
	dir := t.TempDir()
	w := &pushWorld{t: t, dir: dir, etcdEPs: etcdEPs, prefix: "/" + testdeps.Unique("fault"), procs: map[string]*pushProc{}}
	keys := map[string][]byte{}
	for _, k := range []string{"user", "internal"} {
		keys[k] = []byte(testdeps.Unique(k + "_key_material_padding_padding"))
		if err := os.WriteFile(filepath.Join(dir, k+".key"), keys[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w.internal = keys["internal"]
	w.users, _ = auth.NewSigner(auth.KindUser, keys["user"])
	w.env = append(os.Environ(),
		config.EnvEtcdEndpoints+"="+strings.Join(etcdEPs, ","), config.EnvEtcdPrefix+"="+w.prefix,
		config.EnvUserKeyFile+"="+filepath.Join(dir, "user.key"), config.EnvInternalKeyFile+"="+filepath.Join(dir, "internal.key"),
		config.EnvMessageURL+"=http://127.0.0.1:1", config.EnvShutdownGrace+"=3s")
	w.env = append(w.env, extra...)
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcdEPs, DialTimeout: 5 * time.Second, DialOptions: presence.DialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	w.cli = cli
	ctx, cancel := context.WithCancel(context.Background())
	w.cache = presence.NewCache(cli, w.prefix, nil)
	go w.cache.Run(ctx)
	t.Cleanup(func() {
		w.mu.Lock()
		for _, p := range w.procs {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			<-p.done
			if t.Failed() {
				t.Logf("--- log of %s (tail) ---\n%s", p.name, p.log.String())
			}
		}
		w.mu.Unlock()
		cancel()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_, _ = cli.Delete(dctx, w.prefix, clientv3.WithPrefix())
		_ = cli.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := w.cache.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	tokens, _ := route.NewTokenSource(w.internal, "fault-router")
	w.router = route.New(route.Options{Directory: w.cache, Tokens: tokens}) // the product's defaults
	return w
}

// start runs a push process and waits until its /readyz answers 200.
func (w *pushWorld) start(name string) *pushProc {
	w.t.Helper()
	p := w.launch(name)
	w.awaitReady(p, true, 60*time.Second)
	return p
}

// launch runs a push process.
func (w *pushWorld) launch(name string) *pushProc {
	t := w.t
	t.Helper()
	ws, in, met := testdeps.FreeAddr(t), testdeps.FreeAddr(t), testdeps.FreeAddr(t)
	cmd := exec.Command(imclusterBin(t), "push")
	cmd.Env = append(append([]string{}, w.env...), config.EnvNodeID+"="+name, config.EnvHTTPAddr+"="+ws,
		config.EnvInternalAddr+"="+in, config.EnvMetricsAddr+"="+met)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &pushProc{name: name, wsURL: "ws://" + ws + "/", metrics: "http://" + met, cmd: cmd, done: make(chan struct{}), log: &lockedBuffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	w.mu.Lock()
	w.procs[name] = p
	w.mu.Unlock()
	return p
}

// ready reports whether p's /readyz answers 200.
func (p *pushProc) ready() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(p.metrics + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// awaitReady waits until p's readiness is want, within d; it returns when.
func (w *pushWorld) awaitReady(p *pushProc, want bool, d time.Duration) time.Time {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for {
		select {
		case <-p.done:
			w.t.Fatalf("%s exited:\n%s", p.name, p.log.String())
		default:
		}
		if p.ready() == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: readiness not %v within %v", p.name, want, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *pushWorld) signal(p *pushProc, sig syscall.Signal) {
	w.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		w.t.Fatal(err)
	}
	if sig == syscall.SIGSTOP {
		// Stopped only some time after kill(2) returned: a delivery sent
		// meanwhile was still answered, and the breaker then opened a
		// batch later than the test counts on.
		if err := testdeps.AwaitStopped(p.cmd.Process.Pid, 10*time.Second); err != nil {
			w.t.Fatal(err)
		}
	}
}

// device is a connected client that records pushed events and sync hints.
type device struct {
	cl      *client.Client
	mu      sync.Mutex
	seqs    []int64
	hints   []string
	changed chan struct{}
}

func (w *pushWorld) connect(p *pushProc, user, dev string) *device {
	w.t.Helper()
	tok, err := w.users.Sign(user, time.Hour)
	if err != nil {
		w.t.Fatal(err)
	}
	d := &device{changed: make(chan struct{}, 1)}
	note := func() {
		select {
		case d.changed <- struct{}{}:
		default:
		}
	}
	d.cl = client.New(client.Config{URLs: []string{p.wsURL}, Token: tok, DeviceID: dev, Terminal: "ios", NoSync: true, NoAutoAck: true,
		OnEvent:    func(ev protocol.Event) { d.mu.Lock(); d.seqs = append(d.seqs, ev.Seq); d.mu.Unlock(); note() },
		OnSyncHint: func(r string) { d.mu.Lock(); d.hints = append(d.hints, r); d.mu.Unlock(); note() }})
	d.cl.Start()
	w.t.Cleanup(d.cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := d.cl.WaitConnected(ctx); err != nil {
		w.t.Fatalf("%s/%s: %v", user, dev, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(w.cache.Sessions(user)) == 0 {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s's session not in the presence cache within 10 s", user)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d
}

// await waits until cond holds on d (checked at every event or hint).
func (d *device) await(t *testing.T, what string, within time.Duration, cond func(seqs []int64, hints []string) bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		d.mu.Lock()
		ok := cond(append([]int64(nil), d.seqs...), append([]string(nil), d.hints...))
		d.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-d.changed:
		case <-deadline:
			d.mu.Lock()
			defer d.mu.Unlock()
			t.Fatalf("%s: not within %v (seqs %v, hints %v)", what, within, d.seqs, d.hints)
		}
	}
}

func msg(conv string, seq int64) protocol.Event {
	return protocol.Event{Kind: protocol.KindMessage, ConvID: conv, Seq: seq, From: "sender",
		Message: &protocol.Message{MsgID: "m", From: "sender", To: "x", Type: protocol.TypeText, Body: &protocol.Body{Text: "hi"}}}
}
