package realnode

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"sigs.k8s.io/yaml"
)

// The chart's monitoring options as the journey and TestMonitoringManifests
// render them.
var monitoringValues = []string{"--set", "grafanaDashboard.create=true,prometheusRule.enabled=true"}

// monitoringRefs is what the chart's dashboards and alerts name.
type monitoringRefs struct {
	metrics  map[string][]string        // metric name → where (dashboard panel or alert)
	labels   map[string]map[string]bool // metric name → label names its matchers use
	recorded map[string]bool            // names the rules record themselves
	alerts   []promRule
}

type promRule struct {
	Record        string            `json:"record,omitempty"`
	Alert         string            `json:"alert,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name     string     `json:"name"`
			Interval string     `json:"interval,omitempty"`
			Rules    []promRule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

var promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

// renderMonitoring lints the chart with the dashboards and alerts on,
// renders them, checks that the ConfigMap's dashboards are JSON Grafana can
// load and the PrometheusRule is well-formed (strictly: no unknown field),
// that every alert has a severity, summary, description and a runbook
// section in docs/observability.md, and returns every metric their PromQL
// names.
func renderMonitoring(t *testing.T, helm, root string) monitoringRefs {
	t.Helper()
	chart := filepath.Join(root, "charts", "imcluster-operator")
	out, err := run(t, 2*time.Minute, nil, helm, append([]string{"lint", "--strict", chart}, monitoringValues...)...)
	if err != nil || !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint with the monitoring options: %v\n%s", err, out)
	}
	out, err = run(t, 2*time.Minute, nil, helm, append([]string{"template", "imc", chart, "-n", "imcluster-system"}, monitoringValues...)...)
	if err != nil {
		t.Fatalf("helm template with the monitoring options: %v", err)
	}
	runbooks := runbookSections(t, root)
	refs := monitoringRefs{metrics: map[string][]string{}, labels: map[string]map[string]bool{}, recorded: map[string]bool{}}
	add := func(where, expr string, variable bool) {
		var err error
		if variable {
			if expr, err = grafanaVariableExpr(expr); err != nil {
				t.Errorf("%s: %v", where, err)
				return
			}
		}
		sels, err := promqlSelectors(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if len(sels) == 0 && expr != "" {
			t.Errorf("%s: %q names no metric", where, expr)
		}
		for _, s := range sels {
			if !slices.Contains(refs.metrics[s.name], where) {
				refs.metrics[s.name] = append(refs.metrics[s.name], where)
			}
			if refs.labels[s.name] == nil {
				refs.labels[s.name] = map[string]bool{}
			}
			for _, l := range s.labels {
				refs.labels[s.name][l] = true
			}
		}
	}
	var dashboards, rules int
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("rendered chart: a document is not YAML: %v\n%s", err, tail(doc, 2000))
		}
		switch head.Kind {
		case "ConfigMap":
			if head.Metadata.Labels["grafana_dashboard"] != "1" {
				t.Errorf("ConfigMap %s lacks the sidecar label grafana_dashboard: \"1\": %v", head.Metadata.Name, head.Metadata.Labels)
			}
			for key, body := range head.Data {
				dashboards++
				checkDashboard(t, key, body, add)
			}
		case "PrometheusRule":
			var pr prometheusRule
			if err := yaml.UnmarshalStrict([]byte(doc), &pr); err != nil {
				t.Fatalf("PrometheusRule: %v", err)
			}
			if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Metadata.Name == "" || len(pr.Spec.Groups) == 0 {
				t.Errorf("PrometheusRule: apiVersion %q, name %q, %d groups", pr.APIVersion, pr.Metadata.Name, len(pr.Spec.Groups))
			}
			for _, g := range pr.Spec.Groups {
				for _, r := range g.Rules {
					rules++
					if r.Record != "" {
						refs.recorded[r.Record] = true
					}
					checkRule(t, r, runbooks)
					refs.alerts = append(refs.alerts, r)
					add("alert "+r.Alert+r.Record, r.Expr, false)
				}
			}
		}
	}
	if dashboards == 0 || rules == 0 {
		t.Fatalf("rendered %d dashboards and %d rules with %v", dashboards, rules, monitoringValues)
	}
	t.Logf("monitoring: %d dashboard(s) and %d rules name %d metrics", dashboards, rules, len(refs.metrics))
	return refs
}

// checkDashboard checks one dashboard's JSON and hands every query to add.
func checkDashboard(t *testing.T, key, body string, add func(where, expr string, variable bool)) {
	t.Helper()
	if !strings.HasSuffix(key, ".json") {
		t.Errorf("dashboard key %s: want NAME.json", key)
	}
	// A ConfigMap holds 1 MiB; kubectl apply's last-applied annotation
	// 256 KiB (users who render the chart and apply it).
	if len(body) > 200<<10 {
		t.Errorf("dashboard %s is %d bytes: too big for kubectl apply's last-applied annotation", key, len(body))
	}
	var d struct {
		UID        string            `json:"uid"`
		Title      string            `json:"title"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Errorf("dashboard %s is not JSON: %v", key, err)
		return
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Errorf("dashboard %s: uid %q, title %q, %d panels", key, d.UID, d.Title, len(d.Panels))
	}
	type panel struct {
		ID      int               `json:"id"`
		Type    string            `json:"type"`
		Title   string            `json:"title"`
		Panels  []json.RawMessage `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	ids := map[int]string{}
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Errorf("dashboard %s: a panel: %v", key, err)
				continue
			}
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("dashboard %s: panels %q and %q share id %d", key, prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("dashboard %s: panel %q has no query", key, p.Title)
			}
			for _, tg := range p.Targets {
				add(fmt.Sprintf("%s panel %q", key, p.Title), tg.Expr, false)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Errorf("dashboard %s: variable %s: query %s", key, v.Name, v.Query)
				continue
			}
			q = obj.Query
		}
		add(fmt.Sprintf("%s variable %s", key, v.Name), q, true)
	}
}

// checkRule checks one rule's form: an alert has a duration, a severity,
// summary, description and runbook_url pointing at its section of
// docs/observability.md, and annotations Prometheus can expand.
func checkRule(t *testing.T, r promRule, runbooks map[string]bool) {
	t.Helper()
	if (r.Alert == "") == (r.Record == "") || strings.TrimSpace(r.Expr) == "" {
		t.Errorf("rule %+v: want exactly one of alert and record, and an expr", r)
		return
	}
	if r.Record != "" {
		return
	}
	for _, d := range []string{r.For, r.KeepFiringFor} {
		if d != "" && !promDuration.MatchString(d) {
			t.Errorf("alert %s: duration %q", r.Alert, d)
		}
	}
	if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
		t.Errorf("alert %s: severity %q", r.Alert, r.Labels["severity"])
	}
	for _, a := range []string{"summary", "description", "runbook_url"} {
		if strings.TrimSpace(r.Annotations[a]) == "" {
			t.Errorf("alert %s lacks the annotation %s", r.Alert, a)
		}
	}
	anchor := strings.ToLower(r.Alert)
	if !strings.HasSuffix(r.Annotations["runbook_url"], "docs/observability.md#"+anchor) || !runbooks[anchor] {
		t.Errorf("alert %s: runbook_url %q, want docs/observability.md#%s with a section \"### %s\" there",
			r.Alert, r.Annotations["runbook_url"], anchor, r.Alert)
	}
	// Prometheus expands annotations as Go templates with these functions.
	stub := func(v any) string { return fmt.Sprint(v) }
	funcs := template.FuncMap{"humanize": stub, "humanize1024": stub, "humanizePercentage": stub,
		"humanizeDuration": stub, "humanizeTimestamp": stub, "title": stub, "toUpper": strings.ToUpper,
		"toLower": strings.ToLower, "first": stub, "value": stub, "label": stub, "query": stub, "match": stub,
		"reReplaceAll": stub, "safeHtml": stub, "args": stub, "externalURL": stub, "pathPrefix": stub}
	for k, a := range r.Annotations {
		if _, err := template.New(k).Funcs(funcs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + a); err != nil {
			t.Errorf("alert %s: annotation %s does not parse as a Prometheus template: %v", r.Alert, k, err)
		}
	}
}

// runbookSections are the anchors of docs/observability.md's "### Name"
// headings.
func runbookSections(t *testing.T, root string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(l, "### "); ok {
			out[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	return out
}

// metricsSeen records the sample names the pods' /metrics showed: name →
// "component/pod", and name → label names.
type metricsSeen struct {
	pods, labels map[string]map[string]bool
}

func newMetricsSeen() *metricsSeen {
	return &metricsSeen{pods: map[string]map[string]bool{}, labels: map[string]map[string]bool{}}
}

func (s *metricsSeen) add(name, pod string, labels ...string) {
	if s.pods[name] == nil {
		s.pods[name], s.labels[name] = map[string]bool{}, map[string]bool{}
	}
	s.pods[name][pod] = true
	for _, l := range labels {
		s.labels[name][l] = true
	}
}

// scrapeMetrics reads /metrics of every running imcluster pod (message,
// push) and operator pod, on its container port named "metrics", from the
// host (the node: pod IPs are on its bridge), and records the sample names.
// It returns the components it could scrape.
func (c *localCluster) scrapeMetrics(t *testing.T, seen *metricsSeen) map[string]int {
	t.Helper()
	scraped := map[string]int{}
	for _, sel := range [][]string{
		{"-n", "default", "-l", "app.kubernetes.io/name=imcluster"},
		{"-n", "imcluster-system", "-l", "app.kubernetes.io/component=manager"},
	} {
		out, err := c.kubectl(t, 30*time.Second, append([]string{"get", "pods", "--field-selector=status.phase=Running", "-o",
			`jsonpath={range .items[*]}{.metadata.labels.app\.kubernetes\.io/component} {.metadata.name} {.status.podIP} {.spec.containers[0].ports[?(@.name=="metrics")].containerPort}{"\n"}{end}`}, sel...)...)
		if err != nil {
			t.Logf("listing pods %v: %v", sel, err)
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			if len(f) != 4 {
				continue // no IP yet, or no metrics port
			}
			samples, err := scrape("http://" + net.JoinHostPort(f[2], f[3]) + "/metrics")
			if err != nil {
				t.Logf("scraping %s %s: %v", f[0], f[1], err) // a pod going away; the final check needs every tier
				continue
			}
			scraped[f[0]]++
			for n, labels := range samples {
				seen.add(n, f[0]+"/"+f[1], labels...)
			}
		}
	}
	return scraped
}

// scrape returns the sample names of a Prometheus text exposition and
// their label names.
func scrape(url string) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return samples(resp.Body)
}

// samples reads the metric name and label names of every sample line
// (comments and HELP/TYPE lines skipped): a histogram shows as x_bucket
// (with le), x_sum, x_count. Label names come sorted and unique per name.
func samples(r io.Reader) (map[string][]string, error) {
	set := map[string]map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		end := strings.IndexAny(l, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("not a sample line: %q", l)
		}
		name := l[:end]
		if set[name] == nil {
			set[name] = map[string]bool{}
		}
		if l[end] == '{' {
			labels, err := sampleLabels(l[end:])
			if err != nil {
				return nil, err
			}
			for _, lb := range labels {
				set[name][lb] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for n, ls := range set {
		out[n] = slices.Sorted(maps.Keys(ls))
	}
	return out, nil
}

// sampleLabels returns the label names of `{a="x",b="y\"z"} 1`.
func sampleLabels(s string) ([]string, error) {
	var names []string
	i := 1
	for i < len(s) && s[i] != '}' {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 || i+eq+1 >= len(s) || s[i+eq+1] != '"' {
			return nil, fmt.Errorf("labels %q", s)
		}
		names = append(names, strings.TrimSpace(strings.TrimPrefix(s[i:i+eq], ",")))
		end, err := skipString(s, i+eq+1)
		if err != nil {
			return nil, err
		}
		i = end
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
	if i >= len(s) {
		return nil, fmt.Errorf("unclosed labels %q", s)
	}
	return names, nil
}

// eventOnly are metric families the dashboards or alerts name that a
// process exports only once the event they count has happened (a label
// vector with no label values yet) and the journey does not cause. They
// pass when their name is defined in the repository's Go source instead —
// a misspelled name is defined nowhere.
var eventOnly = map[string]string{
	"imcluster_pipeline_retries_total": "a transient Cassandra or Kafka failure in the pipeline",
	"imcluster_route_hints_total":      "a push node's batch skipped (breaker open, node refusing)",
	"imcluster_push_sync_hints_total":  "a sync frame to devices whose pushes may have been dropped",
}

// missingMetrics returns the named metrics that no scrape showed, with
// where they are named; names the rules record, and event-only families
// defined in the source, pass.
func missingMetrics(refs map[string][]string, seen *metricsSeen, recorded map[string]bool, defined map[string]bool) (missing, bySource []string) {
	for _, n := range slices.Sorted(maps.Keys(refs)) {
		switch {
		case len(seen.pods[n]) > 0, recorded[n]:
		case eventOnly[n] != "" && defined[histogramBase(n)]:
			bySource = append(bySource, n)
		default:
			missing = append(missing, fmt.Sprintf("%s (named by %s)", n, strings.Join(slices.Compact(refs[n]), "; ")))
		}
	}
	return missing, bySource
}

// targetLabels are added by Prometheus from the scrape target (a
// PodMonitor's or ServiceMonitor's), not by the process.
var targetLabels = map[string]bool{"namespace": true, "pod": true, "job": true, "instance": true,
	"container": true, "endpoint": true, "service": true, "exported_namespace": true}

// missingLabels returns, for the metrics the scrapes showed, the label
// names the queries match on that no sample of the metric carries (a
// renamed label empties a panel without an error).
func missingLabels(used map[string]map[string]bool, seen *metricsSeen) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(used)) {
		if len(seen.pods[n]) == 0 {
			continue // missingMetrics reports it, or it is event-only or recorded
		}
		for _, l := range slices.Sorted(maps.Keys(used[n])) {
			if !targetLabels[l] && !seen.labels[n][l] {
				out = append(out, fmt.Sprintf("%s{%s} (it has %v)", n, l, slices.Sorted(maps.Keys(seen.labels[n]))))
			}
		}
	}
	return out
}

// histogramBase strips a histogram's or summary's sample suffix.
func histogramBase(n string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(n, s); ok {
			return b
		}
	}
	return n
}

var (
	fullName = regexp.MustCompile(`Name:\s*"(imcluster_[a-z0-9_]+)"`)
	nsName   = regexp.MustCompile(`Namespace:\s*"([a-z0-9_]+)",\s*Subsystem:\s*"([a-z0-9_]+)",\s*Name:\s*"([a-z0-9_]+)"`)
	// A constructor helper: Namespace/Subsystem fixed, Name: name, called
	// as c("x_total", "help") in the same file (services/push).
	helperNS   = regexp.MustCompile(`Namespace:\s*"([a-z0-9_]+)",\s*Subsystem:\s*"([a-z0-9_]+)",\s*Name:\s*name\b`)
	helperCall = regexp.MustCompile(`\bc\("([a-z0-9_]+)",`)
)

// definedMetrics are the imcluster_* metric names defined in the Go source
// (Name: "imcluster_…", Namespace/Subsystem/Name, or a file's constructor
// helper c("name", …)), test files excluded.
func definedMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, dir := range []string{"services", "controllers", "cmd", "pkg"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range fullName.FindAllStringSubmatch(string(b), -1) {
				out[m[1]] = true
			}
			for _, m := range nsName.FindAllStringSubmatch(string(b), -1) {
				out[m[1]+"_"+m[2]+"_"+m[3]] = true
			}
			if h := helperNS.FindStringSubmatch(string(b)); h != nil {
				for _, m := range helperCall.FindAllStringSubmatch(string(b), -1) {
					out[h[1]+"_"+h[2]+"_"+m[1]] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// checkMonitoringMetrics scrapes the running pods until every metric the
// dashboards and alerts name has shown on some pod's /metrics (union over
// the journey's earlier scrapes too), for up to 60 s; then fails on each
// one still missing. It first proves on the live scrapes that a misspelled
// name would be caught.
func (c *localCluster) checkMonitoringMetrics(t *testing.T, root string, refs monitoringRefs, seen *metricsSeen) {
	t.Helper()
	t0 := time.Now()
	defined := definedMetrics(t, root)
	for n := range eventOnly {
		if !defined[n] {
			t.Errorf("eventOnly names %s, which the Go source does not define", n)
		}
	}
	var missing, bySource []string
	var components map[string]int
	deadline := time.Now().Add(60 * time.Second)
	for {
		components = c.scrapeMetrics(t, seen)
		missing, bySource = missingMetrics(refs.metrics, seen, refs.recorded, defined)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, comp := range []string{"message", "push", "manager"} {
		if components[comp] == 0 {
			t.Errorf("no %s pod's /metrics could be scraped (scraped %v)", comp, components)
		}
	}
	// The check can fail: a name one letter off is reported.
	probe := maps.Clone(refs.metrics)
	probe["imcluster_push_connectionz"] = []string{"a misspelling probe"}
	if m, _ := missingMetrics(probe, seen, refs.recorded, defined); len(m) != len(missing)+1 {
		t.Errorf("a misspelled metric was not reported missing: %v", m)
	}
	if len(missing) > 0 {
		t.Errorf("the dashboards and alerts name %d metrics no pod exports:\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
	badLabels := missingLabels(refs.labels, seen)
	if len(badLabels) > 0 {
		t.Errorf("the dashboards and alerts match on labels the metrics do not have:\n  %s", strings.Join(badLabels, "\n  "))
	}
	// And a label one letter off.
	probeLabels := maps.Clone(refs.labels)
	probeLabels["imcluster_push_connections"] = map[string]bool{"reason": true}
	if b := missingLabels(probeLabels, seen); len(b) != len(badLabels)+1 {
		t.Errorf("a misspelled label was not reported missing: %v", b)
	}
	t.Logf("monitoring: %d metrics named by the dashboards and alerts, %d seen on the pods' /metrics (%v), %d only defined in the source (event-only: %v); checked in %s",
		len(refs.metrics), len(refs.metrics)-len(missing)-len(bySource), components, len(bySource), bySource, time.Since(t0).Round(10*time.Millisecond))
}

// TestMonitoringManifests renders the chart's dashboards and alerts (no
// cluster needed): lint, JSON and YAML validity, every query's metric names
// extractable, every alert documented; and both are off by default.
func TestMonitoringManifests(t *testing.T) {
	root := repoRoot(t)
	helm := helmBinary(t)
	refs := renderMonitoring(t, helm, root)
	// Every named imcluster_* metric is defined in the source (the journey
	// checks all of them, controller-runtime's and the Go runtime's
	// included, against live pods).
	defined := definedMetrics(t, root)
	for n, where := range refs.metrics {
		if strings.HasPrefix(n, "imcluster_") && !defined[n] && !defined[histogramBase(n)] {
			t.Errorf("%s (named by %s) is defined nowhere in the Go source", n, strings.Join(where, "; "))
		}
	}
	out, err := run(t, time.Minute, nil, helm, "template", "imc", filepath.Join(root, "charts", "imcluster-operator"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"kind: PrometheusRule", "kind: ConfigMap"} {
		if strings.Contains(out, kind) {
			t.Errorf("default values render %s; the monitoring options are off by default", kind)
		}
	}
}

// helmBinary is IMC_HELM (hack/deps.sh env) or helm on PATH; missing, the
// test skips, or fails under CI=true.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("IMC_HELM"); h != "" {
		if _, err := os.Stat(h); err == nil {
			return h
		}
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	why := "helm not found in IMC_HELM or PATH (run: hack/deps.sh install helm)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("dependency missing under CI=true: %s", why)
	}
	t.Skipf("dependency missing: %s", why)
	return ""
}

func TestMissingMetrics(t *testing.T) {
	seen := newMetricsSeen()
	seen.add("a_total", "push/p")
	seen.add("h_bucket", "message/m", "le")
	defined := map[string]bool{"imcluster_pipeline_retries_total": true}
	tests := []struct {
		name           string
		refs           []string
		recorded       []string
		missing, bySrc int
	}{
		{"all seen", []string{"a_total", "h_bucket"}, nil, 0, 0},
		{"misspelled", []string{"a_totl"}, nil, 1, 0},
		{"histogram base named bare", []string{"h"}, nil, 1, 0},
		{"histogram sum not seen", []string{"h_sum"}, nil, 1, 0},
		{"recorded by a rule", []string{"job:a:rate5m"}, []string{"job:a:rate5m"}, 0, 0},
		{"event-only, defined", []string{"imcluster_pipeline_retries_total"}, nil, 0, 1},
		{"event-only, not defined", []string{"imcluster_route_hints_total"}, nil, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refs := map[string][]string{}
			for _, r := range tc.refs {
				refs[r] = []string{"test"}
			}
			rec := map[string]bool{}
			for _, r := range tc.recorded {
				rec[r] = true
			}
			m, s := missingMetrics(refs, seen, rec, defined)
			if len(m) != tc.missing || len(s) != tc.bySrc {
				t.Errorf("missing %v, by source %v; want %d and %d", m, s, tc.missing, tc.bySrc)
			}
		})
	}
}

func TestSampleNames(t *testing.T) {
	in := `# HELP x_seconds A histogram.
# TYPE x_seconds histogram
x_seconds_bucket{le="0.1"} 1
x_seconds_bucket{le="+Inf"} 2
x_seconds_sum 0.3
x_seconds_count 2
go_goroutines 12
up{job="a b",k="q\"},{"} 1
`
	got, err := samples(strings.NewReader(in))
	want := map[string][]string{"go_goroutines": {}, "up": {"job", "k"}, "x_seconds_bucket": {"le"}, "x_seconds_count": {}, "x_seconds_sum": {}}
	if err != nil || !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("samples = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"m{a=\"b\" 1\n", "m{a} 1\n"} {
		if _, err := samples(strings.NewReader(bad)); err == nil {
			t.Errorf("samples(%q): no error", bad)
		}
	}
}

func TestMissingLabels(t *testing.T) {
	seen := newMetricsSeen()
	seen.add("x_bucket", "message/m", "le", "stage")
	seen.add("y", "push/p")
	tests := []struct {
		used map[string]map[string]bool
		bad  int
	}{
		{map[string]map[string]bool{"x_bucket": {"stage": true, "namespace": true}, "y": {"pod": true}}, 0},
		{map[string]map[string]bool{"x_bucket": {"stag": true}}, 1},
		{map[string]map[string]bool{"y": {"route": true}}, 1},
		{map[string]map[string]bool{"unseen": {"whatever": true}}, 0},
	}
	for i, tc := range tests {
		if got := missingLabels(tc.used, seen); len(got) != tc.bad {
			t.Errorf("case %d: %v, want %d", i, got, tc.bad)
		}
	}
}
