package realnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
)

// TestJourney is the platform team's path on a real node: helm install the
// chart with the locally built image (the operator runs as a pod with the
// chart's RBAC and leader election), apply an IMCluster pointing at Kafka,
// Cassandra and etcd on the host, await Ready (the bootstrap Job ran in a
// pod, the tiers' probes answer), chat through the Services (push NodePort,
// message ClusterIP from the host through kube-proxy), deliver to an
// offline device on login, then scale the push tier 1→3→1 under a steady
// send load with devices connected: zero lost, duplicated or reordered
// messages, and the devices on removed pods reconnect. helm uninstall keeps
// the CRD and the IMCluster. The chart goes in with its Grafana dashboard
// ConfigMap, and every metric the dashboard and the chart's alerts name
// must show on the running pods' /metrics (scraped along the way).
func TestJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("brings up a real cluster; skipped with -short")
	}
	requireHost(t, "containerd", "runc", "podman")
	root := repoRoot(t)
	t0 := time.Now()
	archive := buildImage(t)
	c := clusterUp(t, root)
	deps := startDeps(t, root, c.nodeIP)
	c.load(t, archive)
	t.Logf("image, cluster and private servers ready after %s", time.Since(t0).Round(time.Second))
	monitoring := renderMonitoring(t, c.helm, root)
	seen := newMetricsSeen()

	// prometheus-operator's PrometheusRule CRD, so that the chart's alerts
	// go in with it and the apiserver validates them against its schema.
	c.mustKubectl(t, time.Minute, "apply", "--server-side", "-f", filepath.Join(root, "test", "realnode", "testdata", "prometheusrule-crd.yaml"))
	c.mustKubectl(t, time.Minute, "wait", "--for=condition=Established", "--timeout=30s", "crd/prometheusrules.monitoring.coreos.com")

	// The chart's default image is the one make image tags (appVersion).
	tInstall := time.Now()
	if _, err := run(t, 6*time.Minute, c.env, c.helm, "install", "imc", filepath.Join(root, "charts", "imcluster-operator"),
		"-n", "imcluster-system", "--create-namespace", "--set", "image.pullPolicy=Never", "--set", "replicaCount=1",
		"--set", "grafanaDashboard.create=true,prometheusRule.enabled=true", "--wait", "--timeout", "5m"); err != nil {
		c.describe(t, "imcluster-system")
		t.Fatalf("helm install: %v", err)
	}
	t.Logf("helm install (operator pod Ready) took %s", time.Since(tInstall).Round(100*time.Millisecond))
	if cm := strings.TrimSpace(c.mustKubectl(t, time.Minute, "get", "configmap", "-n", "imcluster-system", "-l", "grafana_dashboard=1", "-o", "name")); cm != "configmap/imc-imcluster-operator-dashboards" {
		t.Errorf("dashboard ConfigMaps for the Grafana sidecar: %q", cm)
	}
	if got := strings.Fields(c.mustKubectl(t, time.Minute, "get", "prometheusrule", "-n", "imcluster-system", "imc-imcluster-operator",
		"-o", "jsonpath={.spec.groups[*].rules[*].alert}")); len(got) != len(monitoring.alerts) {
		t.Errorf("the PrometheusRule stored %d alerts %v, the chart renders %d", len(got), got, len(monitoring.alerts))
	}

	keys := map[string]string{}
	var secretArgs []string
	for _, k := range []string{"user", "service", "internal"} {
		keys[k] = randHex(32)
		secretArgs = append(secretArgs, "--from-literal="+k+".key="+keys[k])
	}
	c.mustKubectl(t, time.Minute, append([]string{"create", "secret", "generic", "imcluster-keys"}, secretArgs...)...)
	manifest := filepath.Join(t.TempDir(), "chat.yaml")
	image := "ghcr.io/imcluster/imcluster:" + chartAppVersion(t, root)
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(`apiVersion: imcluster.io/v1alpha1
kind: IMCluster
metadata:
  name: chat
spec:
  image: %s
  imagePullPolicy: Never
  message: {replicas: 1}
  push:
    replicas: 1
    drainSeconds: 10
    service: {type: NodePort}
  kafka: {brokers: [%q], partitions: 3, replicationFactor: 1}
  cassandra:
    contactPoints: [%q]
    keyspace: imc_journey
    replication: {strategy: SimpleStrategy, factor: 1}
  etcd: {endpoints: ["http://%s"]}
  auth: {secretName: imcluster-keys}
`, image, deps.kafka, deps.cassandra, deps.etcd)), 0o600); err != nil {
		t.Fatal(err)
	}
	tApply := time.Now()
	c.mustKubectl(t, time.Minute, "apply", "-f", manifest)
	if _, err := c.kubectl(t, 6*time.Minute, "wait", "--for=condition=Ready", "imcluster/chat", "--timeout=5m"); err != nil {
		c.describe(t, "default")
		t.Fatalf("IMCluster never Ready: %v", err)
	}
	t.Logf("kubectl apply → IMCluster Ready with real pods: %s", time.Since(tApply).Round(100*time.Millisecond))
	if got := c.mustKubectl(t, time.Minute, "get", "jobs", "-o", "jsonpath={.items[*].status.succeeded}"); strings.TrimSpace(got) != "1" {
		t.Fatalf("bootstrap Job succeeded count %q, want 1", got)
	}

	nodePort := strings.TrimSpace(c.mustKubectl(t, time.Minute, "get", "svc", "chat-push", "-o", "jsonpath={.spec.ports[0].nodePort}"))
	msgAddr := strings.TrimSpace(c.mustKubectl(t, time.Minute, "get", "svc", "chat-message", "-o", "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}"))
	pushURL := "ws://" + c.nodeIP + ":" + nodePort + "/"
	apiURL := "http://" + msgAddr
	users, err := auth.NewSigner(auth.KindUser, []byte(keys["user"]))
	if err != nil {
		t.Fatal(err)
	}
	svcSigner, err := auth.NewSigner(auth.KindService, []byte(keys["service"]))
	if err != nil {
		t.Fatal(err)
	}
	svcTok, err := svcSigner.Sign("journey-backend", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	backend := sdk.New(apiURL, svcTok)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	// A chat: bob online through the push NodePort, carol offline.
	bob := newDevice(t, users, "bob", pushURL, apiURL)
	if _, err := send(ctx, backend, "alice", "bob", "hello-bob"); err != nil {
		t.Fatalf("send to bob: %v", err)
	}
	bob.await(t, 30*time.Second, "hello-bob")
	if _, err := send(ctx, backend, "alice", "carol", "hello-carol"); err != nil {
		t.Fatalf("send to carol: %v", err)
	}
	carol := newDevice(t, users, "carol", pushURL, apiURL)
	carol.await(t, 30*time.Second, "hello-carol")
	t.Log("chat through the Services: online push and offline pull on login delivered")
	c.scrapeMetrics(t, seen)

	// Routine changes must not page anyone (the operator's status
	// semantics, docs/operator.md): through the scale-out, the scale-in and
	// the rolling upgrade below, Ready stays True and no Warning event is
	// recorded for the IMCluster.
	stopReady := c.watchReady(t, "chat")
	tRoutine := time.Now()

	// Scale out, connect devices (spread over the pods by kube-proxy), then
	// scale in under a steady load.
	c.scale(t, 3)
	var devs []*device
	for i := range 6 {
		devs = append(devs, newDevice(t, users, fmt.Sprintf("dev%d", i), pushURL, apiURL))
	}
	podsBefore := c.pushPods(t)
	var sent sync.Map // recipient → *[]string (texts in send order)
	var nSent, nFail atomic.Int64
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }); <-loadDone }
	// A t.Fatal below ends the test while the load runs: stop it first (a
	// t.Errorf after the test completed panics the whole binary).
	t.Cleanup(stopLoad)
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			d := devs[i%len(devs)]
			text := fmt.Sprintf("load-%s-%05d", d.user, i)
			if _, err := send(ctx, backend, "alice", d.user, text); err != nil {
				if ctx.Err() != nil { // the test is ending; this send was cut short
					return
				}
				nFail.Add(1)
				t.Errorf("send %s: %v", text, err)
				continue
			}
			nSent.Add(1)
			v, _ := sent.LoadOrStore(d.user, &[]string{})
			d.mu.Lock()
			*v.(*[]string) = append(*v.(*[]string), text)
			d.mu.Unlock()
		}
	}()
	awaitCount(t, &nSent, 20, 60*time.Second)
	c.scrapeMetrics(t, seen) // three push pods with devices, under load
	tScaleIn := time.Now()
	c.scale(t, 1)
	t.Logf("scale-in 3→1 (drainSeconds 10) settled in %s", time.Since(tScaleIn).Round(100*time.Millisecond))
	awaitCount(t, &nSent, nSent.Load()+20, 60*time.Second)

	// A rolling upgrade to a second tag of the same build, under the load.
	image2 := secondTag(t, archive, image)
	tUpgrade := time.Now()
	c.mustKubectl(t, time.Minute, "patch", "imcluster", "chat", "--type", "merge", "-p", `{"spec":{"image":"`+image2+`"}}`)
	c.awaitJSONPath(t, 5*time.Minute, "imcluster/chat", "{.status.message.image} {.status.push.image}", image2+" "+image2)
	for _, tier := range []string{"message", "push"} {
		c.awaitTier(t, tier, 1, image2)
	}
	c.mustKubectl(t, 3*time.Minute, "wait", "--for=condition=Ready", "imcluster/chat", "--timeout=2m")
	t.Logf("rolling upgrade to %s settled in %s", image2, time.Since(tUpgrade).Round(100*time.Millisecond))
	awaitCount(t, &nSent, nSent.Load()+20, 60*time.Second)
	c.scrapeMetrics(t, seen)
	if notReady := stopReady(); len(notReady) > 0 {
		t.Errorf("Ready was not True during routine scaling and the rollout: %v", notReady)
	}
	if w := c.warningsSince(t, "chat", tRoutine); w != "" {
		t.Errorf("Warning events for the IMCluster during routine scaling and the rollout:\n%s", w)
	}

	// kubectl delete pod of the push pod, then of the message pod, under load.
	for _, tier := range []string{"push", "message"} {
		pods := c.tierPods(t, tier)
		if len(pods) != 1 {
			t.Fatalf("%s pods %v, want 1", tier, pods)
		}
		tDel := time.Now()
		c.mustKubectl(t, 2*time.Minute, "delete", "pod", pods[0], "--wait=true", "--timeout=90s")
		c.awaitTier(t, tier, 1, image2)
		t.Logf("%s pod %s deleted: replaced and ready in %s", tier, pods[0], time.Since(tDel).Round(100*time.Millisecond))
		awaitCount(t, &nSent, nSent.Load()+20, 90*time.Second)
	}

	// The operator's pod deleted: its replacement takes the leader Lease,
	// reconciles, and changes nothing.
	gens := c.generations(t)
	ns := []string{"-n", "imcluster-system"}
	c.mustKubectl(t, 2*time.Minute, append(ns, "delete", "pod", "-l", "app.kubernetes.io/component=manager", "--wait=true", "--timeout=90s")...)
	c.mustKubectl(t, 3*time.Minute, append(ns, "rollout", "status", "deploy/imc-imcluster-operator", "--timeout=2m")...)
	opPod := strings.TrimSpace(c.mustKubectl(t, time.Minute, append(ns, "get", "pods", "-l", "app.kubernetes.io/component=manager",
		"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}")...))
	c.awaitJSONPathPrefix(t, 3*time.Minute, "-n imcluster-system lease/imcluster-operator.imcluster.io", "{.spec.holderIdentity}", opPod)
	// Bounded observation: the new leader's first reconcile runs at once.
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if g := c.generations(t); g != gens {
			t.Fatalf("the operator's restart changed the tiers: generations %s → %s", gens, g)
		}
	}
	c.mustKubectl(t, time.Minute, "wait", "--for=condition=Ready", "imcluster/chat", "--timeout=30s")
	t.Logf("operator pod deleted: %s leads again, tiers untouched (generations %s)", opPod, gens)

	awaitCount(t, &nSent, nSent.Load()+20, 60*time.Second)
	t.Logf("memory under load: %s", stackMemory(root))
	stopLoad()

	// Every message sent reaches its device once, in send order.
	var lost, dup, reordered, late int
	for _, d := range devs {
		v, ok := sent.Load(d.user)
		if !ok {
			continue
		}
		d.mu.Lock()
		want := slices.Clone(*v.(*[]string))
		d.mu.Unlock()
		d.awaitAll(t, 90*time.Second, want)
		l, du, r, la := d.check(want)
		lost, dup, reordered, late = lost+l, dup+du, reordered+r, late+la
		if l+du+r > 0 {
			d.mu.Lock()
			t.Logf("%s: %v", d.user, d.notes)
			for i := range d.texts {
				t.Logf("%s got %s seq %d pushed=%v", d.user, d.texts[i], d.seqs[i], d.vias[i])
			}
			d.mu.Unlock()
		}
	}
	podsAfter := c.pushPods(t)
	moved := 0
	for _, d := range devs {
		first, last := d.nodes()
		if first != last {
			moved++
		}
		if !slices.Contains(podsAfter, last) && len(podsAfter) > 0 && strings.HasPrefix(last, "chat-push") {
			t.Errorf("%s ended on %s, not a remaining pod %v", d.user, last, podsAfter)
		}
	}
	t.Logf("scale-in, rolling upgrade, push and message pod deleted, operator restarted, under load: %d sent (%d failed), lost %d, duplicated %d, reordered %d (arrived after a higher seq: %d, allowed); %d of %d devices reconnected (pods %v → %v)",
		nSent.Load(), nFail.Load(), lost, dup, reordered, late, moved, len(devs), podsBefore, podsAfter)
	if lost+dup+reordered > 0 {
		t.Errorf("under load: lost %d, duplicated %d, reordered %d messages", lost, dup, reordered)
	}

	// A device sends over its socket (the push pod forwards it to the
	// message tier), and the recipient's device gets it.
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	res, err := bob.cl.Send(sctx, map[string]any{"to": "carol", "client_msg_id": "ws-bob-carol", "type": protocol.TypeText,
		"body": map[string]string{"text": "ws-bob-carol"}})
	scancel()
	if err != nil || res.Status != 200 {
		t.Errorf("bob's send over the socket: status %d, %v", res.Status, err)
	}
	carol.await(t, 30*time.Second, "ws-bob-carol")

	// The dashboard and the alerts name only metrics the pods export. A
	// device leaving counts a close on its push pod.
	bob.cl.Close()
	c.checkMonitoringMetrics(t, root, monitoring, seen)

	// helm uninstall keeps the CRD and the IMCluster (resource-policy keep).
	if _, err := run(t, 3*time.Minute, c.env, c.helm, "uninstall", "imc", "-n", "imcluster-system", "--wait"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	c.mustKubectl(t, time.Minute, "get", "crd", "imclusters.imcluster.io")
	c.mustKubectl(t, time.Minute, "get", "imcluster", "chat")
	t.Logf("journey done in %s", time.Since(t0).Round(time.Second))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func chartAppVersion(t *testing.T, root string) string {
	b, err := os.ReadFile(filepath.Join(root, "charts", "imcluster-operator", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "appVersion:"); ok {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	t.Fatal("no appVersion in Chart.yaml")
	return ""
}

// send sends one text, retrying the same client_msg_id (attempt numbered)
// on an error for up to 90 s (a deleted single message pod is replaced
// within that), as a business back end would.
func send(ctx context.Context, c *sdk.Client, from, to, text string) (sdk.SendResult, error) {
	deadline := time.Now().Add(90 * time.Second)
	var err error
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var r sdk.SendResult
		r, err = c.SendPrivateMessage(sctx, from, sdk.Message{To: to, ClientMsgID: text, Type: protocol.TypeText,
			Body: protocol.Body{Text: text}, Attempt: attempt})
		cancel()
		if err == nil {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return sdk.SendResult{}, err
}

func awaitCount(t *testing.T, n *atomic.Int64, want int64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d sends succeeded within %s, want %d", n.Load(), d, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// device is one user's device on the push Service.
type device struct {
	user   string
	cl     *client.Client
	mu     sync.Mutex
	texts  []string // message texts in OnEvent order
	seqs   []int64
	nodeID []string // welcome node of each connection
	vias   []bool   // pushed (true) or synced, per entry of texts
	notes  []string // what check found out of order
	got    chan struct{}
}

func newDevice(t *testing.T, users *auth.Signer, user, pushURL, apiURL string) *device {
	t.Helper()
	d := &device{user: user, got: make(chan struct{}, 1)}
	d.cl = client.New(client.Config{
		URLs: []string{pushURL}, APIURL: apiURL, DeviceID: user + "-d1", Terminal: "desktop",
		TokenSource: func(context.Context) (string, error) { return users.Sign(user, time.Hour) },
		OnEventVia: func(ev protocol.Event, pushed bool) {
			if ev.Kind != protocol.KindMessage || ev.Message == nil || ev.Message.Body == nil {
				return
			}
			d.mu.Lock()
			d.texts = append(d.texts, ev.Message.Body.Text)
			d.seqs = append(d.seqs, ev.Seq)
			d.vias = append(d.vias, pushed)
			d.mu.Unlock()
			select {
			case d.got <- struct{}{}:
			default:
			}
		},
		OnConnect: func(w protocol.ServerFrame) {
			d.mu.Lock()
			d.nodeID = append(d.nodeID, w.NodeID)
			d.mu.Unlock()
		},
	})
	d.cl.Start()
	t.Cleanup(d.cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.cl.WaitConnected(ctx); err != nil {
		t.Fatalf("%s could not connect to %s: %v", user, pushURL, err)
	}
	return d
}

func (d *device) has(text string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.texts, text)
}

func (d *device) await(t *testing.T, timeout time.Duration, text string) {
	t.Helper()
	d.awaitAll(t, timeout, []string{text})
}

func (d *device) awaitAll(t *testing.T, timeout time.Duration, texts []string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		missing := 0
		for _, x := range texts {
			if !d.has(x) {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		select {
		case <-d.got:
		case <-time.After(500 * time.Millisecond): // a sync may land without a new event signal
		case <-deadline.C:
			t.Errorf("%s: %d of %d messages not delivered within %s", d.user, missing, len(texts), timeout)
			return
		}
	}
}

// check compares what arrived with what was sent: lost, duplicated (one
// text under two seqs, or handed on twice), and reordered — the
// conversation's seq order (the order an app shows, docs/protocol.md:
// arrival order may differ when a push and a sync page race) differs from
// the send order (the load sends one at a time per device). late counts
// arrivals after a higher seq, which the protocol allows.
func (d *device) check(want []string) (lost, dup, reordered, late int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	seqOf := map[string]int64{}
	seen := map[string]int{}
	var maxSeq int64
	for i, x := range d.texts {
		if !strings.HasPrefix(x, "load-") {
			continue
		}
		seen[x]++
		if s, ok := seqOf[x]; ok && s != d.seqs[i] {
			d.notes = append(d.notes, fmt.Sprintf("%s under seq %d and %d", x, s, d.seqs[i]))
		}
		seqOf[x] = d.seqs[i]
		if d.seqs[i] < maxSeq {
			late++
		}
		maxSeq = max(maxSeq, d.seqs[i])
	}
	var prev string
	for _, x := range want {
		switch seen[x] {
		case 0:
			lost++
			d.notes = append(d.notes, x+" lost")
			continue
		case 1:
		default:
			dup += seen[x] - 1
			d.notes = append(d.notes, fmt.Sprintf("%s handed on %d times", x, seen[x]))
		}
		if prev != "" && seqOf[x] <= seqOf[prev] {
			reordered++
			d.notes = append(d.notes, fmt.Sprintf("%s (seq %d) sent after %s (seq %d)", x, seqOf[x], prev, seqOf[prev]))
		}
		prev = x
	}
	return lost, dup, reordered, late
}

func (d *device) nodes() (first, last string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.nodeID) == 0 {
		return "", ""
	}
	return d.nodeID[0], d.nodeID[len(d.nodeID)-1]
}

// watchReady polls the IMCluster's Ready condition (once a second) until
// the returned function is called, which returns every observation that
// was not "True".
func (c *localCluster) watchReady(t *testing.T, name string) func() []string {
	stop, done := make(chan struct{}), make(chan []string, 1)
	go func() {
		var bad []string
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- bad
				return
			case <-tick.C:
			}
			out, err := c.kubectl(t, 30*time.Second, "get", "imcluster", name, "-o",
				`jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}`)
			if err == nil && !strings.HasPrefix(strings.TrimSpace(out), "True/") {
				bad = append(bad, time.Now().Format("15:04:05.000")+" "+strings.TrimSpace(out))
			}
		}
	}()
	return func() []string { close(stop); return <-done }
}

// warningsSince returns the Warning events recorded for the IMCluster name
// since t0, one per line ("" when none).
func (c *localCluster) warningsSince(t *testing.T, name string, t0 time.Time) string {
	out := c.mustKubectl(t, time.Minute, "get", "events", "--field-selector", "type=Warning,involvedObject.kind=IMCluster,involvedObject.name="+name,
		"-o", `jsonpath={range .items[*]}{.lastTimestamp}{"\t"}{.eventTime}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}`)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(l, "\t", 4)
		if len(f) < 4 {
			continue
		}
		when, err := time.Parse(time.RFC3339, f[0])
		if err != nil {
			when, err = time.Parse(time.RFC3339Nano, f[1])
		}
		if err == nil && when.Before(t0.Add(-time.Second)) {
			continue // before the routine changes began
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// scale runs kubectl scale on the IMCluster and waits until the push tier
// has exactly n ready pods and the IMCluster is Ready again.
func (c *localCluster) scale(t *testing.T, n int) {
	t.Helper()
	c.mustKubectl(t, time.Minute, "scale", "imcluster/chat", "--replicas="+strconv.Itoa(n))
	deadline := time.Now().Add(4 * time.Minute)
	for {
		out, _ := c.kubectl(t, 30*time.Second, "get", "imcluster", "chat", "-o",
			"jsonpath={.status.push.replicas}/{.status.push.readyReplicas}/{.status.push.updatedReplicas}")
		pods := c.pushPods(t)
		want := fmt.Sprintf("%d/%d/%d", n, n, n)
		if strings.TrimSpace(out) == want && len(pods) == n {
			break
		}
		if time.Now().After(deadline) {
			c.describe(t, "default")
			t.Fatalf("push tier never reached %d ready pods: status %q, pods %v", n, out, pods)
		}
		time.Sleep(time.Second)
	}
	if _, err := c.kubectl(t, 3*time.Minute, "wait", "--for=condition=Ready", "imcluster/chat", "--timeout=2m"); err != nil {
		t.Fatalf("IMCluster not Ready after scaling to %d: %v", n, err)
	}
}

// pushPods lists the push pods that exist (terminating ones included).
func (c *localCluster) pushPods(t *testing.T) []string {
	t.Helper()
	out, err := c.kubectl(t, 30*time.Second, "get", "pods", "-l", "app.kubernetes.io/component=push", "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		t.Logf("listing push pods: %v", err)
		return nil
	}
	return strings.Fields(out)
}

// describe logs the state of a namespace for a failure's diagnosis.
func (c *localCluster) describe(t *testing.T, ns string) {
	t.Helper()
	for _, args := range [][]string{
		{"get", "pods,svc,jobs,events", "-o", "wide", "-n", ns},
		{"describe", "pods", "-n", ns},
		{"logs", "-n", ns, "--all-containers", "--tail=40", "-l", "app.kubernetes.io/name in (imcluster,imcluster-operator)"},
	} {
		out, err := c.kubectl(t, time.Minute, args...)
		t.Logf("kubectl %s: %v\n%s", strings.Join(args, " "), err, tail(out, 6000))
	}
}

// secondTag is the archive's other tag of the same build (hack/image.sh
// tags the appVersion and the git revision).
func secondTag(t *testing.T, archive, first string) string {
	t.Helper()
	for _, tag := range archiveTags(t, archive) {
		if tag != first && !strings.HasPrefix(tag, "localhost/") {
			return tag
		}
	}
	t.Fatalf("%s has no second tag besides %s", archive, first)
	return ""
}

// tierPods lists the tier's pods (terminating ones included).
func (c *localCluster) tierPods(t *testing.T, tier string) []string {
	t.Helper()
	out, err := c.kubectl(t, 30*time.Second, "get", "pods", "-l", "app.kubernetes.io/component="+tier, "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		t.Logf("listing %s pods: %v", tier, err)
		return nil
	}
	return strings.Fields(out)
}

// awaitTier waits until the tier has exactly n pods, all ready and on image.
func (c *localCluster) awaitTier(t *testing.T, tier string, n int, image string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	want := strings.TrimSpace(strings.Repeat("True "+image+" ", n))
	for {
		out, _ := c.kubectl(t, 30*time.Second, "get", "pods", "-l", "app.kubernetes.io/component="+tier, "-o",
			`jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {.spec.containers[0].image} {end}`)
		if strings.TrimSpace(out) == want {
			return
		}
		if time.Now().After(deadline) {
			c.describe(t, "default")
			t.Fatalf("%s tier never had exactly %d ready pods on %s: %q", tier, n, image, out)
		}
		time.Sleep(time.Second)
	}
}

func (c *localCluster) awaitJSONPath(t *testing.T, d time.Duration, obj, path, want string) {
	t.Helper()
	c.awaitJSON(t, d, obj, path, func(got string) bool { return got == want }, want)
}

func (c *localCluster) awaitJSONPathPrefix(t *testing.T, d time.Duration, obj, path, prefix string) {
	t.Helper()
	c.awaitJSON(t, d, obj, path, func(got string) bool { return prefix != "" && strings.HasPrefix(got, prefix) }, prefix+"…")
}

func (c *localCluster) awaitJSON(t *testing.T, d time.Duration, obj, path string, ok func(string) bool, want string) {
	t.Helper()
	args := append(strings.Fields(obj), "-o", "jsonpath="+path)
	args = append([]string{"get"}, args...)
	deadline := time.Now().Add(d)
	for {
		out, _ := c.kubectl(t, 30*time.Second, args...)
		if ok(strings.TrimSpace(out)) {
			return
		}
		if time.Now().After(deadline) {
			c.describe(t, "default")
			t.Fatalf("%s %s: %q after %s, want %q", obj, path, out, d, want)
		}
		time.Sleep(time.Second)
	}
}

// generations are the tiers' Deployments' metadata.generation.
func (c *localCluster) generations(t *testing.T) string {
	t.Helper()
	out, err := c.kubectl(t, 30*time.Second, "get", "deploy", "chat-message", "chat-push", "-o", "jsonpath={.items[*].metadata.generation}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}
