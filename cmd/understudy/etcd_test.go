package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
	"github.com/understudy-ha/understudy/takeover"
)

const testSpec = `roles:
  - name: web
    exec: {command: [/bin/sleep, "1000"]}
    vip: {address: 10.99.0.10/24, interface: lo}
  - name: db
    exec: {command: [/bin/sleep, "1000"]}
`

// cluster is one test cluster (its own prefix) on a shared embedded etcd.
type cluster struct {
	t    *testing.T
	etcd *leasetest.Etcd
	name string
	st   *lease.Store
}

func newCluster(t *testing.T, e *leasetest.Etcd, name string) *cluster {
	return &cluster{t: t, etcd: e, name: name, st: lease.NewStore(e.Client(t), lease.Prefix(name), nil)}
}

// cli runs understudy against this cluster.
func (c *cluster) cli(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return runCLI(c.t, c.args(args)...)
}

func (c *cluster) args(args []string) []string {
	return append(args, "--etcd-endpoints", strings.Join(c.etcd.Endpoints(), ","), "--cluster", c.name)
}

// mustCLI runs understudy and fails the test unless it exits with want.
func (c *cluster) mustCLI(want int, args ...string) string {
	c.t.Helper()
	stdout, stderr, code := c.cli(args...)
	if code != want {
		c.t.Fatalf("understudy %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), code, want, stdout, stderr)
	}
	return stdout + stderr
}

func (c *cluster) status() takeover.ClusterStatus {
	c.t.Helper()
	stdout, stderr, code := c.cli("status", "-o", "json")
	if code != exitOK && code != exitDegraded {
		c.t.Fatalf("status: exit %d: %s", code, stderr)
	}
	var cs takeover.ClusterStatus
	if err := json.Unmarshal([]byte(stdout), &cs); err != nil {
		c.t.Fatalf("status -o json: %v\n%s", err, stdout)
	}
	if cs.Held() != (code == exitOK) {
		c.t.Errorf("status exit %d but unheld %v", code, cs.Unheld)
	}
	return cs
}

func (c *cluster) view() *lease.View {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.st.View(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

func findNode(cs takeover.ClusterStatus, name string) (takeover.NodeStatus, bool) {
	for _, n := range cs.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return takeover.NodeStatus{}, false
}

func TestApplyAndStatus(t *testing.T) {
	c := newCluster(t, leasetest.Start(t), "apply")
	spec := writeFile(t, "cluster.yaml", testSpec)

	if out := c.mustCLI(exitOK, "status"); !strings.Contains(out, "no cluster spec applied") {
		t.Errorf("status without spec:\n%s", out)
	}
	out := c.mustCLI(exitOK, "apply", "-f", spec, "--dry-run")
	for _, want := range []string{"--- stored spec (none applied yet)", "+roles:", "+  - name: web", "dry run: nothing written"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if _, rev, _ := storedSpecTextT(t, c); rev != 0 {
		t.Fatalf("dry run wrote the spec (revision %d)", rev)
	}
	if out := c.mustCLI(exitOK, "apply", "-f", spec); !strings.Contains(out, "2 roles, spec revision") {
		t.Errorf("apply:\n%s", out)
	}
	if out := c.mustCLI(exitOK, "apply", "-f", spec); !strings.Contains(out, "no changes") {
		t.Errorf("second apply:\n%s", out)
	}

	cs := c.status()
	if strings.Join(cs.Unheld, ",") != "web,db" || len(cs.Roles) != 2 || cs.Roles[0].VIP != "10.99.0.10/24" {
		t.Errorf("status after apply: %+v", cs)
	}
	out = c.mustCLI(exitDegraded, "status")
	for _, want := range []string{"ROLE", "(unheld)", "DEGRADED: 2 unheld (web, db)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	out = c.mustCLI(exitDegraded, "status", "-o", "yaml")
	for _, want := range []string{"cluster: apply\n", "unheld:\n  - web\n  - db\n", "holder: \"\""} {
		if !strings.Contains(out, want) {
			t.Errorf("status yaml lacks %q:\n%s", want, out)
		}
	}
}

func storedSpecTextT(t *testing.T, c *cluster) ([]byte, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return storedSpecText(ctx, c.st)
}

var specRevRE = regexp.MustCompile(`spec revision (\d+)`)

func TestApplyConflict(t *testing.T) {
	c := newCluster(t, leasetest.Start(t), "conflict")
	apply := func(want int, text string, extra ...string) (string, int64) {
		out := c.mustCLI(want, append([]string{"apply", "-f", writeFile(t, "c.yaml", text)}, extra...)...)
		m := specRevRE.FindStringSubmatch(out)
		if m == nil {
			return out, 0
		}
		rev, _ := strconv.ParseInt(m[1], 10, 64)
		return out, rev
	}
	_, rev1 := apply(exitOK, testSpec)
	out, rev2 := apply(exitOK, testSpec+"max_roles_per_node: 2\n")
	if rev1 == 0 || rev2 <= rev1 || !strings.Contains(out, "+max_roles_per_node: 2") {
		t.Fatalf("revisions %d, %d; second apply:\n%s", rev1, rev2, out)
	}
	// An operator who reviewed revision rev1 must not silently overwrite rev2.
	out, _ = apply(exitFailure, testSpec+"failback: true\n", "--if-revision", strconv.FormatInt(rev1, 10))
	if !strings.Contains(out, "no longer at revision") || !strings.Contains(out, "--force") {
		t.Errorf("conflict message:\n%s", out)
	}
	if v := c.view(); v.Spec.MaxRolesPerNode != 2 || v.Spec.Failback {
		t.Errorf("conflicting apply changed the spec: %+v", v.Spec)
	}
	out, _ = apply(exitFailure, testSpec, "--if-revision", "0")
	if !strings.Contains(out, "no longer at revision 0") {
		t.Errorf("create-only apply over an existing spec:\n%s", out)
	}
	apply(exitOK, testSpec+"failback: true\n", "--force")
	if v := c.view(); !v.Spec.Failback {
		t.Errorf("--force did not write: %+v", v.Spec)
	}
	out, _ = apply(exitOK, strings.Replace(testSpec, "  - name: db\n    exec: {command: [/bin/sleep, \"1000\"]}\n", "", 1))
	if !strings.Contains(out, "warning: role db is removed") || !strings.Contains(out, "-  - name: db") {
		t.Errorf("removing a role:\n%s", out)
	}
}

func TestNodeCommandsOnDownNode(t *testing.T) {
	c := newCluster(t, leasetest.Start(t), "nodes")
	if out := c.mustCLI(exitOK, "node", "add", "node-e"); !strings.Contains(out, "node node-e added with id 1;") {
		t.Errorf("node add:\n%s", out)
	}
	c.mustCLI(exitOK, "node", "add", "node-f")
	if out := c.mustCLI(exitOK, "node", "add", "node-e"); !strings.Contains(out, "id 1;") {
		t.Errorf("node add is not idempotent:\n%s", out)
	}
	n, ok := findNode(c.status(), "node-e")
	if !ok || n.State != takeover.StateDown || n.ID != 1 || n.Qualified != "none" {
		t.Errorf("new node in status: %+v (found %v)", n, ok)
	}
	if out := c.mustCLI(exitOK, "status"); !regexp.MustCompile(`node-e\s+1\s+down\s`).MatchString(out) {
		t.Errorf("status table:\n%s", out)
	}

	c.mustCLI(exitOK, "node", "cordon", "node-e")
	if n, _ := findNode(c.status(), "node-e"); !n.Cordoned {
		t.Errorf("cordon: %+v", n)
	}
	c.mustCLI(exitOK, "node", "uncordon", "node-e")
	if n, _ := findNode(c.status(), "node-e"); n.Cordoned {
		t.Errorf("uncordon: %+v", n)
	}
	if out := c.mustCLI(exitFailure, "node", "qualify", "node-e"); !strings.Contains(out, "node-e is down") {
		t.Errorf("qualify a down node:\n%s", out)
	}
	if out := c.mustCLI(exitUsage, "node", "cordon", "node-x"); !strings.Contains(out, `unknown node "node-x" (known: "node-e", "node-f")`) {
		t.Errorf("cordon unknown node:\n%s", out)
	}
	if out := c.mustCLI(exitOK, "node", "drain", "node-e", "--wait"); !strings.Contains(out, "drained") {
		t.Errorf("drain a down node:\n%s", out)
	}
	if v := c.view(); !v.Cordoned["node-e"] || len(v.Commands["node-e"]) != 0 {
		t.Errorf("drain of a down node: cordoned %v, commands %v", v.Cordoned["node-e"], v.Commands["node-e"])
	}
	c.mustCLI(exitOK, "node", "remove", "node-e")
	if _, ok := findNode(c.status(), "node-e"); ok {
		t.Error("removed node still in status")
	}
	if _, ok := findNode(c.status(), "node-f"); !ok {
		t.Error("removing node-e removed node-f")
	}
}

func TestHistory(t *testing.T) {
	c := newCluster(t, leasetest.Start(t), "hist")
	if out := c.mustCLI(exitOK, "history"); !strings.Contains(out, "no events") {
		t.Errorf("empty history:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs := []lease.Event{
		{Time: time.Now(), Node: "node-d", Kind: "join"},
		{Time: time.Now(), Role: "web", Node: "node-d", Kind: "takeover", From: "node-a", Token: 42,
			Steps: []lease.Step{{Name: "fence", Duration: 120 * time.Millisecond}, {Name: "storage", Duration: 1200 * time.Millisecond}},
			Total: 1320 * time.Millisecond},
		{Time: time.Now(), Role: "db", Node: "node-d", Kind: "takeover-failed",
			Steps: []lease.Step{{Name: "fence", Duration: 3 * time.Second, Err: "reservation conflict"}}},
	}
	for _, ev := range evs {
		if err := c.st.AppendEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	out := c.mustCLI(exitOK, "history")
	for _, want := range []string{"TIME", "join", "fence=120ms storage=1.2s", "1.32s", "node-a", "42",
		"fence=3s!", "fence: reservation conflict"} {
		if !strings.Contains(out, want) {
			t.Errorf("history lacks %q:\n%s", want, out)
		}
	}
	out = c.mustCLI(exitOK, "history", "web", "-o", "json")
	var got []lease.Event
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("history -o json: %v\n%s", err, out)
	}
	if len(got) != 1 || got[0].Token != 42 || len(got[0].Steps) != 2 {
		t.Errorf("history web: %+v", got)
	}
	if out := c.mustCLI(exitOK, "history", "--limit", "1"); strings.Contains(out, "join") || !strings.Contains(out, "takeover-failed") {
		t.Errorf("history --limit 1 should show only the newest:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond (a test may poll) until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
