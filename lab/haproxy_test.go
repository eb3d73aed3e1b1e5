//go:build linux

package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// HAProxy in front of the lab's role-a, the pattern of deploy/haproxy/haproxy.cfg: every
// node is a server, and the agents' GET /roles/role-a, 200 on the holder only, decides
// which one is up. The load balancer runs on a host of its own, "lb": on the client
// network, where clients reach it and it reaches the services, and on the control network,
// where the agents' health endpoints listen, like a load balancer with a leg on the
// management network. (The client host is on the client network only, so it could not
// run the checks.)

const (
	lbHost       = "lb"                  // the load balancer's host in the lab network
	lbPort       = 8000                  // its frontend, on lbHost's client-network address
	healthPort   = 7480                  // the agents' health endpoint, on each node's control address
	lbWait       = 30 * time.Second      // bounds each wait for HAProxy or an answer through it
	lbPoll       = 20 * time.Millisecond // between the client's requests
	lbKeepAsking = 2 * time.Second       // how long the client asks after a change, to catch a stray answer
)

// requireHAProxy skips unless haproxy is installed, or fails with UNDERSTUDY_REQUIRE_ALL=1.
func requireHAProxy(t testing.TB) {
	t.Helper()
	if onPath("haproxy") {
		return
	}
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatal("the HAProxy tests need haproxy, which is not installed (UNDERSTUDY_REQUIRE_ALL=1)")
	}
	t.Skip("haproxy not installed")
}

// haproxyCheck validates the configuration at path with `haproxy -c`, warnings included
// (-dW): an example that makes HAProxy warn is not one to copy.
func haproxyCheck(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "haproxy", "-c", "-dW", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", path, err, out)
	}
}

// TestHAProxyExampleConfig keeps deploy/haproxy/haproxy.cfg valid and keeps what makes it
// follow the role: the role check, 200 as the only healthy answer, and every node a
// server checked on the health port every 500 ms.
func TestHAProxyExampleConfig(t *testing.T) {
	requireHAProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join("..", "deploy", "haproxy", "haproxy.cfg")
	haproxyCheck(t, ctx, path)
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want *regexp.Regexp
		n    int
	}{
		{"role check", regexp.MustCompile(`(?m)^\s*option httpchk GET /roles/web$`), 1},
		{"only 200 is up", regexp.MustCompile(`(?m)^\s*http-check expect status 200$`), 1},
		{"every node checked on the health port",
			regexp.MustCompile(`(?m)^\s*server node-[a-d] \S+:8080 check addr \S+ port 7480 inter 500ms fall 2 rise 1$`), 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := len(tc.want.FindAll(text, -1)); got != tc.n {
				t.Errorf("%s: %d lines match %q, want %d", path, got, tc.want, tc.n)
			}
		})
	}
}

// TestHAProxyFollowsFailover: HAProxy sends role-a's clients to a, and only to a once its
// first checks ran; after a crashes it sends them to d, the standby that took role-a
// over, and never to a again. The switch-over time (crash to d's first answer through
// the load balancer) is logged, not asserted.
func TestHAProxyFollowsFailover(t *testing.T) {
	requireNetLab(t)
	requireHAProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startOfDayNetns(t, ctx)
	lb, err := f.Net().AddNode(ctx, lbHost)
	if err != nil {
		t.Fatal(err)
	}
	checkRoleEndpoint(t, f, lb)
	p := startHAProxy(t, ctx, f, lb)

	if _, err := p.until(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// HAProxy counts every server up until its first check: until then b and c, which
	// serve role-b and role-c on the same port, may answer. Once it marked them and d
	// down, only the holder may.
	if err := p.waitLog(ctx, "Server role-a/b is DOWN", "Server role-a/c is DOWN", "Server role-a/d is DOWN"); err != nil {
		t.Fatal(err)
	}
	if others := p.keepAsking(ctx, len(p.answers), "a"); len(others) > 0 {
		t.Errorf("with a holding role-a and the others marked down, %d answers through HAProxy came from %v", len(others), others)
	}
	crashed, err := f.Crash(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	served, err := p.until(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	if others := p.keepAsking(ctx, len(p.answers)-1, "d"); len(others) > 0 { // from d's first answer on
		t.Errorf("after d's first answer through HAProxy, %d answers came from %v (a must never answer again)", len(others), others)
	}
	ev, err := f.WaitEvent(ctx, "role-a", func(ev lease.Event) bool {
		return ev.Kind == takeover.EventTakeover && ev.Node == "d"
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HAProxy switched role-a from a to d %s after the crash (d's takeover: %s); client: %s",
		served.Sub(crashed).Round(time.Millisecond), lease.FormatSteps(ev.Steps), p.summary())
	if b, err := os.ReadFile(p.logPath); err == nil {
		t.Logf("HAProxy's output:\n%s", b)
	}
}

// startOfDayNetns builds a namespace farm at the seed's start of day (a, b, c active with
// role-a, role-b, role-c; d standby), closed at cleanup with the agents' logs shown if
// the test failed.
func startOfDayNetns(t *testing.T, ctx context.Context) *lab.Farm {
	t.Helper()
	f, err := lab.NewFarm(ctx, lab.Options{Binary: binary, Netns: true, TTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, f)
		}
		if err := f.Close(); err != nil {
			t.Errorf("close farm: %v", err)
		}
	})
	mustStartOfDay(t, ctx, f)
	return f
}

// checkRoleEndpoint asks the agents' /roles/<role> from the load balancer's host, as
// its checks do: 200 only on the holder.
func checkRoleEndpoint(t *testing.T, f *lab.Farm, from lab.NetnsHost) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, DialContext: f.Net().DialContext(from.NS)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	tests := []struct {
		name, node, role string
		want             int
	}{
		{"holder", "a", "role-a", http.StatusOK},
		{"holder of another role", "b", "role-a", http.StatusServiceUnavailable},
		{"standby", "d", "role-a", http.StatusServiceUnavailable},
		{"unknown role", "d", "no-such-role", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := f.Net().Node(tc.node)
			if err != nil {
				t.Fatal(err)
			}
			url := fmt.Sprintf("http://%s/roles/%s", net.JoinHostPort(h.Ctl, strconv.Itoa(healthPort)), tc.role)
			resp, err := client.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s on %s: %d %q, want %d", url, tc.node, resp.StatusCode, body, tc.want)
			}
		})
	}
}

// startHAProxy writes the load balancer's configuration for role-a, checks it, runs
// `haproxy -db` in lb's namespace until cleanup, and returns a client that asks role-a
// through it from the client host. HAProxy's output is shown if the test failed.
func startHAProxy(t *testing.T, ctx context.Context, f *lab.Farm, lb lab.NetnsHost) *lbProber {
	t.Helper()
	dir := t.TempDir()
	cfg, logPath := filepath.Join(dir, "haproxy.cfg"), filepath.Join(dir, "haproxy.log")
	text, err := lbConfig(f, lb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, text, 0o600); err != nil {
		t.Fatal(err)
	}
	haproxyCheck(t, ctx, cfg)
	t.Cleanup(func() {
		if b, err := os.ReadFile(logPath); err == nil && t.Failed() {
			t.Logf("--- haproxy output ---\n%s", b)
		}
	})
	procs := lab.NewNetnsProcs()
	t.Cleanup(func() {
		if err := procs.Close(); err != nil {
			t.Errorf("stop haproxy: %v", err)
		}
	})
	if err := procs.Start("haproxy", lb.NS, []string{"haproxy", "-f", cfg, "-db"}, nil, logPath); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: f.Net().DialContext(f.Net().Client().NS)}
	t.Cleanup(tr.CloseIdleConnections)
	return &lbProber{client: &http.Client{Transport: tr}, logPath: logPath,
		url: fmt.Sprintf("http://%s/", net.JoinHostPort(lb.Addr, strconv.Itoa(lbPort))),
		alive: func() error {
			if procs.PID("haproxy") == 0 {
				return fmt.Errorf("haproxy exited: %v", procs.ExitErr("haproxy"))
			}
			return nil
		}}
}

// lbConfig is the example's pattern for role-a in the lab: every node a server on its
// client address, checked on its control address; timeouts short, since the lab's
// network answers in microseconds.
func lbConfig(f *lab.Farm, lb lab.NetnsHost) ([]byte, error) {
	r, err := f.Role("role-a")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
	maxconn 256

defaults
	mode http
	timeout connect 500ms
	timeout client 5s
	timeout server 5s
	timeout check 500ms
	retries 2
	option redispatch

frontend role-a
	bind %s
	default_backend role-a

backend role-a
	option httpchk GET /roles/role-a
	http-check expect status 200
	default-server on-marked-down shutdown-sessions
`, net.JoinHostPort(lb.Addr, strconv.Itoa(lbPort)))
	for _, name := range f.Nodes() {
		h, err := f.Net().Node(name)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\tserver %s %s check addr %s port %d inter 500ms fall 2 rise 1\n",
			name, net.JoinHostPort(h.Addr, strconv.Itoa(r.Port)), h.Ctl, healthPort)
	}
	return []byte(b.String()), nil
}

// lbProber asks role-a through the load balancer, one new connection per request, and
// remembers who answered, in order. Only the test's goroutine uses it.
type lbProber struct {
	client  *http.Client
	url     string
	logPath string
	alive   func() error // nil while haproxy runs
	answers []string     // the node of each answer
	errs    int          // requests without an answer from a node
	lastErr error
}

// ask makes one request and returns the node that answered, "" if none did.
func (p *lbProber) ask(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var rep lab.Reply
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = p.client.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			_ = resp.Body.Close()
			if err = json.Unmarshal(body, &rep); resp.StatusCode != http.StatusOK || err != nil {
				err = fmt.Errorf("HTTP %d: %q", resp.StatusCode, body)
			}
		}
	}
	if err != nil {
		p.errs, p.lastErr = p.errs+1, err
		return ""
	}
	p.answers = append(p.answers, rep.Node)
	return rep.Node
}

// until asks every lbPoll until node answers (bounded by lbWait) and returns when it did.
func (p *lbProber) until(ctx context.Context, node string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, lbWait)
	defer cancel()
	if err := tickUntil(ctx, func() (bool, error) { return p.ask(ctx) == node, p.alive() }); err != nil {
		return time.Time{}, fmt.Errorf("%s never answered through HAProxy at %s: %w; %s; last error: %v",
			node, p.url, err, p.summary(), p.lastErr)
	}
	return time.Now(), nil
}

// keepAsking asks every lbPoll for lbKeepAsking, then lists the answers from index i on
// that did not come from node.
func (p *lbProber) keepAsking(ctx context.Context, i int, node string) []string {
	actx, cancel := context.WithTimeout(ctx, lbKeepAsking)
	defer cancel()
	_ = tickUntil(actx, func() (bool, error) { p.ask(actx); return false, nil })
	var others []string
	for _, a := range p.answers[i:] {
		if a != node {
			others = append(others, a)
		}
	}
	return others
}

// waitLog polls HAProxy's output (bounded by lbWait) until it has every one of lines.
func (p *lbProber) waitLog(ctx context.Context, lines ...string) error {
	ctx, cancel := context.WithTimeout(ctx, lbWait)
	defer cancel()
	var missing []string
	err := tickUntil(ctx, func() (bool, error) {
		b, _ := os.ReadFile(p.logPath)
		missing = slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return bytes.Contains(b, []byte(l)) })
		return len(missing) == 0, p.alive()
	})
	if err != nil {
		return fmt.Errorf("HAProxy never logged %q: %w", missing, err)
	}
	return nil
}

// tickUntil calls f every lbPoll until it reports done (nil) or an error, or ctx ends.
func tickUntil(ctx context.Context, f func() (bool, error)) error {
	tick := time.NewTicker(lbPoll)
	defer tick.Stop()
	for {
		if done, err := f(); done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// summary counts the answers by node, and the requests nobody answered.
func (p *lbProber) summary() string {
	counts := map[string]int{}
	for _, a := range p.answers {
		counts[a]++
	}
	var parts []string
	for _, a := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d answers from %s", counts[a], a))
	}
	return strings.Join(append(parts, fmt.Sprintf("%d without an answer", p.errs)), ", ")
}
