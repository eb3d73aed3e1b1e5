package deploy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"

	"github.com/understudy-ha/understudy/health"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
	"github.com/understudy-ha/understudy/takeover"
)

// TestMain: the Prometheus test runs agents, etcd and a health server in-process; all of
// their goroutines must be gone at the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestPrometheusRules checks deploy/prometheus/alerts.yaml and docs/metrics.md against
// the metrics a real agent exports: two agents, one role, a failover from one to the
// other, then /metrics of the new holder's health server.
func TestPrometheusRules(t *testing.T) {
	families := scrapeAfterFailover(t)
	t.Run("alerts use exported metrics", func(t *testing.T) { checkAlerts(t, families) })
	t.Run("every metric is documented", func(t *testing.T) { checkDocumented(t, families) })
	t.Run("failover is observed", func(t *testing.T) {
		h := families["understudy_failover_seconds"]
		if h == nil || len(h.Metric) != 1 || h.Metric[0].GetHistogram().GetSampleCount() != 1 {
			t.Fatalf("understudy_failover_seconds after one failover: %v", h)
		}
	})
}

// promSynthesized are series Prometheus itself writes for every scrape target; no agent
// registers them.
var promSynthesized = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

func checkAlerts(t *testing.T, families map[string]*dto.MetricFamily) {
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true) // a misspelt key would be ignored by Prometheus too, silently
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	series := seriesNames(families)
	n := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("rule %q: needs alert, expr, labels.severity, annotations.summary and .description", r.Alert)
			}
			if _, err := model.ParseDuration(orZero(r.For)); err != nil {
				t.Errorf("rule %s: for %q: %v", r.Alert, r.For, err)
			}
			sels := selectors(r.Expr)
			if len(sels) == 0 {
				t.Errorf("rule %s: no metric found in %q", r.Alert, r.Expr)
			}
			for _, s := range sels {
				checkSelector(t, r.Alert, s, series)
			}
		}
	}
	if n == 0 {
		t.Fatal("alerts.yaml has no rules")
	}
}

func checkSelector(t *testing.T, alert string, s selector, series map[string][]string) {
	t.Helper()
	if slices.Contains(promSynthesized, s.name) {
		return
	}
	labels, ok := series[s.name]
	if !ok {
		t.Errorf("rule %s uses %s, which the agent does not export", alert, s.name)
		return
	}
	for _, l := range s.labels {
		if !slices.Contains(labels, l) && !slices.Contains(targetLabels, l) {
			t.Errorf("rule %s: %s has no label %q (has %v)", alert, s.name, l, labels)
		}
	}
}

func orZero(d string) string {
	if d == "" {
		return "0s"
	}
	return d
}

// seriesNames maps every series name a query can use to its label names: a histogram
// family is queried as _bucket (with le), _sum and _count, a summary as itself (with
// quantile), _sum and _count.
func seriesNames(families map[string]*dto.MetricFamily) map[string][]string {
	out := map[string][]string{}
	for name, f := range families {
		var labels []string
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"] = append(slices.Clone(labels), "le")
			out[name+"_sum"], out[name+"_count"] = labels, labels
		case dto.MetricType_SUMMARY:
			out[name] = append(slices.Clone(labels), "quantile")
			out[name+"_sum"], out[name+"_count"] = labels, labels
		default:
			out[name] = labels
		}
	}
	return out
}

// selector is one metric a PromQL expression reads, with the labels it matches on.
type selector struct {
	name   string
	labels []string
}

// promToken splits PromQL into what matters for finding metric names: string literals,
// range/subquery brackets and label matchers (kept whole), numbers and durations (so
// the "m" of 5m is not a name), identifiers, and single other characters.
//
// A regexp rather than the real parser: the PromQL parser lives in
// github.com/prometheus/prometheus, a module far too heavy to add for one test, and the
// rules only need the metric identifiers and their matchers.
var promToken = regexp.MustCompile(promString + `|\[[^\]]*\]|\{(?:` + promString + `|[^}"'` + "`" + `])*\}|[0-9.][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*|\S`)

// promString matches PromQL string literals: double, single or back quoted.
const promString = `"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`"

var (
	promStringRe = regexp.MustCompile(promString)
	promIdent    = regexp.MustCompile(`^[a-zA-Z_:]`)
)

// promKeywords are identifiers that are not metrics; the grouping ones are followed by a
// label list.
var promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right",
	"and", "or", "unless", "bool", "offset", "inf", "nan"}

var matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)

// selectors finds the metric selectors of expr: identifiers that are not keywords and
// not called (functions and aggregations are followed by "(").
func selectors(expr string) []selector {
	toks := promToken.FindAllString(expr, -1)
	var out []selector
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		if !promIdent.MatchString(tok) {
			continue
		}
		next := ""
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch {
		case slices.Contains(promKeywords, strings.ToLower(tok)):
			if next == "(" { // a label list: skip to its ")"
				for i < len(toks) && toks[i] != ")" {
					i++
				}
			}
		case next == "(" || next == "by" || next == "without":
			// a function or an aggregation
		default:
			s := selector{name: tok}
			if strings.HasPrefix(next, "{") {
				for _, m := range matcherLabel.FindAllStringSubmatch(promStringRe.ReplaceAllString(next, `""`), -1) {
					s.labels = append(s.labels, m[1])
				}
			}
			out = append(out, s)
		}
	}
	return out
}

func TestPrometheusSelectors(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{`up{job="understudy"} == 0`, "up[job]"},
		{`sum by (role) (understudy_role_held) == 0`, "understudy_role_held[]"},
		{`sum by (instance, role) (increase(x_total{kind=~"demote|lost"}[10m])) > 0`, "x_total[kind]"},
		{`histogram_quantile(0.9, sum without (instance) (rate(a_bucket[5m]))) > 1.5e3`, "a_bucket[]"},
		{`a offset 5m / ignoring(le) group_left b{c!="d, e}"}`, "a[] b[c]"},
		{`max_over_time(g[1h:5m]) and on(role) h`, "g[] h[]"},
		{"count(i{j=`k=l`, m='n'}) > bool 1", "i[j,m]"},
	}
	for _, tc := range tests {
		var got []string
		for _, s := range selectors(tc.expr) {
			got = append(got, s.name+"["+strings.Join(s.labels, ",")+"]")
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("selectors(%q) = %v, want %s", tc.expr, got, tc.want)
		}
	}
}

// checkDocumented: docs/metrics.md names every understudy_ metric the agent exports.
func checkDocumented(t *testing.T, families map[string]*dto.MetricFamily) {
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range families {
		if strings.HasPrefix(name, "understudy_") && !strings.Contains(string(b), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not describe %s", name)
		}
	}
}

const ttl = 2 * time.Second

// scrapeAfterFailover runs agents a and b against an embedded etcd, lets a hold role r1,
// stops a so that b takes r1 over, and returns b's /metrics.
func scrapeAfterFailover(t *testing.T) map[string]*dto.MetricFamily {
	e := leasetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := lease.NewStore(e.Client(t), lease.Prefix("prom"), nil)
	spec := "roles:\n  - name: r1\n    exec:\n      command: [sleep, \"3600\"]\n      stop_timeout: 2s\n"
	if _, _, err := st.PutSpec(ctx, []byte(spec), 0, true); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, e, "a")
	waitFor(ctx, t, "a holds r1", func() bool { _, ok := a.Local().Roles["r1"]; return ok })
	b := startAgent(t, e, "b")
	waitFor(ctx, t, "b is a standby", func() bool { return b.Local().State == takeover.StateStandby })
	a.stop(t)
	waitFor(ctx, t, "b takes r1 over", func() bool { _, ok := b.Local().Roles["r1"]; return ok })
	return scrape(ctx, t, health.New(b, b.Gatherer(), nil))
}

type runningAgent struct {
	*takeover.Agent
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, e *leasetest.Etcd, node string) *runningAgent {
	cfg := takeover.Config{Node: node, Cluster: "prom", Prefix: lease.Prefix("prom"),
		Etcd: takeover.EtcdConfig{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second}, TTL: ttl,
		HealthListen: "127.0.0.1:0", StateDir: t.TempDir(), LogFormat: "console", LogLevel: "info"}
	ag, err := takeover.NewAgent(cfg, zaptest.NewLogger(t).Named(node))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: ag, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- ag.Run(ctx) }()
	t.Cleanup(func() { ra.stop(t) })
	return ra
}

// stop ends the agent gracefully (its roles are released) and waits for it; idempotent.
func (ra *runningAgent) stop(t *testing.T) {
	ra.cancel()
	select {
	case err, ok := <-ra.done:
		if ok && err != nil {
			t.Errorf("agent: %v", err)
		}
		if ok {
			close(ra.done)
		}
	case <-time.After(30 * time.Second):
		t.Error("agent did not stop within 30s")
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}

// scrape serves srv on a loopback port, GETs /metrics and parses it.
func scrape(ctx context.Context, t *testing.T, srv *health.Server) map[string]*dto.MetricFamily {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(sctx, ln) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("health server: %v", err)
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/metrics", ln.Addr()), nil)
	if err != nil {
		t.Fatal(err)
	}
	// No keep-alive: an idle client connection would outlive the test (goleak).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	return families
}
