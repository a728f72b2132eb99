package realnode

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// promqlFuncs are PromQL's functions and aggregations (Prometheus 3). A
// name followed by "(" that is not one of them is an error: a misspelled
// function would otherwise read as a metric or go unnoticed.
var promqlFuncs = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`
		abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp
		clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month
		deg delta deriv double_exponential_smoothing exp floor first_over_time histogram_avg histogram_count
		histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters
		hour idelta increase info irate label_join label_replace last_over_time ln log10 log2
		mad_over_time max_over_time min_over_time minute month pi predict_linear present_over_time
		quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
		sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh
		time timestamp ts_of_max_over_time ts_of_min_over_time ts_of_last_over_time vector year
		start end`) {
		promqlFuncs[f] = true
	}
	for a := range promqlAggregations {
		promqlFuncs[a] = true
	}
}

// promqlAggregations may take "by (…)"/"without (…)" before their
// parenthesised argument ("sum by (le) (…)").
var promqlAggregations = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true, "stddev": true,
	"stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true,
	"limitk": true, "limit_ratio": true,
}

// promqlLabelLists are the keywords followed by a parenthesised list of
// label names, not of expressions.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// promqlWords are operators and literals spelled as words.
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true,
}

// promqlMetrics returns the metric names an expression selects, sorted and
// unique: every identifier that is not a function, aggregation, keyword or
// label (in a matcher, a by/without/on/ignoring/group_* list) — with the
// name as written, so a histogram's x_bucket stays x_bucket. Grafana
// variables ($x, ${x}, [[x]]) are skipped. It fails on what it cannot
// check: unbalanced brackets, an unknown function, a __name__ regex.
func promqlMetrics(expr string) ([]string, error) {
	sels, err := promqlSelectors(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range sels {
		names = append(names, s.name)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// selector is one vector selector: the metric and its matchers' label
// names (__name__ excluded).
type selector struct {
	name   string
	labels []string
}

// promqlSelectors returns the expression's vector selectors in order (see
// promqlMetrics).
func promqlSelectors(expr string) ([]selector, error) {
	var sels []selector
	var stack []byte
	closing := map[byte]byte{'(': ')', '[': ']', '{': '}'}
	i := 0
	lastIdentEnd := -1         // where the last metric name ended (after spaces)
	peek := func(j int) byte { // next non-space byte at or after j
		for j < len(expr) && (expr[j] == ' ' || expr[j] == '\t' || expr[j] == '\n' || expr[j] == '\r') {
			j++
		}
		if j < len(expr) {
			return expr[j]
		}
		return 0
	}
	for i < len(expr) {
		ch := expr[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			i++
		case ch == '"' || ch == '\'' || ch == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case ch == '#': // a comment runs to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case ch == '{':
			end, name, labels, err := skipMatchers(expr, i)
			if err != nil {
				return nil, err
			}
			switch {
			case name != "":
				sels = append(sels, selector{name, labels})
			case len(sels) > 0 && sels[len(sels)-1].labels == nil && lastIdentEnd == i:
				sels[len(sels)-1].labels = labels // x{…}: the matchers of x
			default:
				return nil, fmt.Errorf("a selector without a metric name at %d in %q", i, expr)
			}
			i = end
		case ch == '[':
			if strings.HasPrefix(expr[i:], "[[") { // Grafana's old variable syntax
				end := strings.Index(expr[i:], "]]")
				if end < 0 {
					return nil, fmt.Errorf("unclosed [[ at %d in %q", i, expr)
				}
				i += end + 2
				continue
			}
			end := strings.IndexByte(expr[i:], ']') // a range or subquery: durations only
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at %d in %q", i, expr)
			}
			i += end + 1
		case ch == '(':
			stack = append(stack, ch)
			i++
		case ch == ')' || ch == ']' || ch == '}':
			if len(stack) == 0 || closing[stack[len(stack)-1]] != ch {
				return nil, fmt.Errorf("unbalanced %q at %d in %q", ch, i, expr)
			}
			stack = stack[:len(stack)-1]
			i++
		case ch == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				end := strings.IndexByte(expr[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unclosed ${ at %d in %q", i, expr)
				}
				i += end + 1
				continue
			}
			for i < len(expr) && isIdentByte(expr[i], true) {
				i++
			}
		case ch >= '0' && ch <= '9' || ch == '.':
			for i < len(expr) && (isIdentByte(expr[i], true) || expr[i] == '.') {
				i++
			}
		case isIdentByte(ch, false):
			j := i
			for j < len(expr) && isIdentByte(expr[j], true) {
				j++
			}
			word := expr[i:j]
			lower := strings.ToLower(word)
			next := peek(j)
			i = j
			switch {
			case promqlLabelLists[word]:
				if next == '(' {
					k := strings.IndexByte(expr[i:], ')')
					if k < 0 {
						return nil, fmt.Errorf("unclosed label list after %s in %q", word, expr)
					}
					i += k + 1
				}
			case promqlWords[lower]:
			case promqlAggregations[word]:
			case next == '(':
				if !promqlFuncs[word] {
					return nil, fmt.Errorf("unknown function %s( in %q", word, expr)
				}
			default:
				sels = append(sels, selector{name: word})
				lastIdentEnd = j
				for lastIdentEnd < len(expr) && (expr[lastIdentEnd] == ' ' || expr[lastIdentEnd] == '\t' || expr[lastIdentEnd] == '\n') {
					lastIdentEnd++
				}
			}
		case strings.IndexByte("+-*/%^=!<>,@:", ch) >= 0:
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at %d in %q", ch, i, expr)
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q in %q", stack[len(stack)-1], expr)
	}
	return sels, nil
}

func isIdentByte(c byte, notFirst bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || notFirst && c >= '0' && c <= '9'
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed string at %d in %q", i, s)
}

var nameMatcher = regexp.MustCompile(`^__name__\s*(=~|!=|!~|=)\s*$`)

// skipMatchers returns the index after the matcher list starting at i, the
// metric name of a __name__="x" matcher in it, and the other matchers'
// label names (non-nil).
func skipMatchers(s string, i int) (end int, name string, labels []string, err error) {
	j := i + 1
	label := j
	labels = []string{}
	matched := false // the current matcher has its value
	unfinished := func() bool { return !matched && strings.TrimSpace(s[label:j]) != "" }
	for j < len(s) {
		switch s[j] {
		case '"', '\'', '`':
			k, err := skipString(s, j)
			if err != nil {
				return 0, "", nil, err
			}
			lhs := strings.TrimSpace(s[label:j])
			if m := nameMatcher.FindStringSubmatch(lhs); m != nil {
				if m[1] != "=" {
					return 0, "", nil, fmt.Errorf("__name__%s cannot be checked (name the metric) in %q", m[1], s)
				}
				name = s[j+1 : k-1]
			} else if m := labelMatcher.FindStringSubmatch(lhs); m != nil {
				labels = append(labels, m[1])
			} else {
				return 0, "", nil, fmt.Errorf("matcher %q… in %q", lhs, s)
			}
			matched = true
			j = k
		case ',':
			if unfinished() {
				return 0, "", nil, fmt.Errorf("matcher %q in %q", s[label:j], s)
			}
			j++
			label, matched = j, false
		case '}':
			if unfinished() {
				return 0, "", nil, fmt.Errorf("matcher %q in %q", s[label:j], s)
			}
			return j + 1, name, labels, nil
		default:
			j++
		}
	}
	return 0, "", nil, fmt.Errorf("unclosed { at %d in %q", i, s)
}

var labelMatcher = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)$`)

var (
	labelValuesQuery = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	labelOnlyQuery   = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	queryResult      = regexp.MustCompile(`^query_result\((.*)\)$`)
)

// grafanaVariableMetrics returns the metrics a Grafana Prometheus variable
// query names (see grafanaVariableExpr).
func grafanaVariableMetrics(q string) ([]string, error) {
	expr, err := grafanaVariableExpr(q)
	if err != nil || expr == "" {
		return nil, err
	}
	return promqlMetrics(expr)
}

// grafanaVariableExpr returns the PromQL of a Grafana Prometheus variable
// query: label_values(expr, label), label_values(label) (""),
// query_result(expr). Other forms (metrics(…)) cannot be checked.
func grafanaVariableExpr(q string) (string, error) {
	q = strings.TrimSpace(q)
	switch {
	case labelOnlyQuery.MatchString(q):
		return "", nil
	case labelValuesQuery.MatchString(q):
		return labelValuesQuery.FindStringSubmatch(q)[1], nil
	case queryResult.MatchString(q):
		return queryResult.FindStringSubmatch(q)[1], nil
	}
	return "", fmt.Errorf("variable query %q: only label_values and query_result are checked", q)
}

func TestPromQLMetrics(t *testing.T) {
	tests := []struct {
		expr string
		want []string
		err  string
	}{
		{`up`, []string{"up"}, ""},
		{`sum(rate(foo_total{a="b"}[5m]))`, []string{"foo_total"}, ""},
		{`histogram_quantile(0.99, sum by (le, stage) (rate(x_seconds_bucket{namespace=~"$namespace"}[$__rate_interval])))`, []string{"x_seconds_bucket"}, ""},
		{`sum(rate(x_sum[5m])) / sum(rate(x_count[5m]))`, []string{"x_count", "x_sum"}, ""},
		{`sum(x) by (pod, le) > 1e-3`, []string{"x"}, ""},
		{`a / on (pod) group_left (node) b`, []string{"a", "b"}, ""},
		{`a * ignoring(instance) group_right b`, []string{"a", "b"}, ""},
		{`count without (instance) (m)`, []string{"m"}, ""},
		{`{__name__="foo", job="x"}`, []string{"foo"}, ""},
		{`x{l="}{by(", m='q\'r'} and y offset 5m`, []string{"x", "y"}, ""},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, []string{"m"}, ""},
		{`max_over_time(rate(m[5m])[30m:1m])`, []string{"m"}, ""},
		{`1 - m > bool 0.5`, []string{"m"}, ""},
		{`m @ start()`, []string{"m"}, ""},
		{`m > Inf or n < -NaN`, []string{"m", "n"}, ""},
		{`a unless on (namespace) b > 0`, []string{"a", "b"}, ""},
		{`absent(m{c="imcluster"})`, []string{"m"}, ""},
		{`m and on (namespace, pod) (a or b)`, []string{"a", "b", "m"}, ""},
		{`sum(x) + sum(x)`, []string{"x"}, ""},
		{`recorded:rule:rate5m > 0`, []string{"recorded:rule:rate5m"}, ""},
		{`topk(5, m)`, []string{"m"}, ""},
		{`rate(m[${interval}])`, []string{"m"}, ""},
		{`sum(rate(m[5m])`, nil, "unclosed"},
		{`sum(rate(m[5m])))`, nil, "unbalanced"},
		{`rat(m[5m])`, nil, "unknown function rat("},
		{`{__name__=~"a|b"}`, nil, "cannot be checked"},
		{`m{a="b"`, nil, "unclosed {"},
		{`m{a="b}`, nil, "unclosed string"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := promqlMetrics(tc.expr)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q (names %v)", err, tc.err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("names = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPromQLSelectors(t *testing.T) {
	tests := []struct {
		expr string
		want string // name{labels} per selector
	}{
		{`rate(x_bucket{namespace=~"$ns", stage="total"}[5m]) / y`, `x_bucket{namespace,stage} y{}`},
		{`x {a!="1",b!~"2|3"} and on (pod) z{c="}"}`, `x{a,b} z{c}`},
		{`{__name__="m", le="+Inf"}`, `m{le}`},
		{`sum by (le) (m)`, `m{}`},
	}
	for _, tc := range tests {
		sels, err := promqlSelectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			got = append(got, s.name+"{"+strings.Join(s.labels, ",")+"}")
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%s: %s, want %s", tc.expr, g, tc.want)
		}
	}
	for _, bad := range []string{`rate({a="b"}[5m])`, `m{a=b}`} {
		if _, err := promqlSelectors(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestGrafanaVariableMetrics(t *testing.T) {
	tests := []struct {
		q    string
		want []string
		err  bool
	}{
		{`label_values(imcluster_push_connections, namespace)`, []string{"imcluster_push_connections"}, false},
		{`label_values(m{controller="imcluster"}, namespace)`, []string{"m"}, false},
		{`label_values(namespace)`, nil, false},
		{`query_result(sum by (pod) (m))`, []string{"m"}, false},
		{`metrics(imcluster_.*)`, nil, true},
	}
	for _, tc := range tests {
		got, err := grafanaVariableMetrics(tc.q)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v (error %v)", tc.q, got, err, tc.want, tc.err)
		}
	}
}
