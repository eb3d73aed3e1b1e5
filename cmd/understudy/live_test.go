package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
)

// liveNode stands in for an agent through the real lease API: a session, a node record
// and, optionally, a role claim. It acts on commands only where a test says so.
type liveNode struct {
	name  string
	id    uint32
	sess  *lease.Session
	claim lease.Claim
}

func (c *cluster) join(ctx context.Context, name, state string, role string) *liveNode {
	c.t.Helper()
	id, err := c.st.AllocateID(ctx, name)
	if err != nil {
		c.t.Fatal(err)
	}
	sess, err := lease.NewSession(ctx, c.st.Client(), 5*time.Second, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sess.Close(cctx)
	})
	n := &liveNode{name: name, id: id, sess: sess}
	rec := lease.NodeRecord{Name: name, ID: id, State: state, Version: "test", Since: time.Now(),
		TTL: int64(sess.TTL() / time.Second), Lease: int64(sess.ID())}
	if role != "" {
		claim, _, ok, err := c.st.TryClaim(ctx, sess, role, name)
		if err != nil || !ok {
			c.t.Fatalf("claim %s for %s: ok=%v err=%v", role, name, ok, err)
		}
		n.claim = claim
		rec.Roles = []string{role}
	}
	if err := c.st.PutNode(ctx, sess, rec); err != nil {
		c.t.Fatal(err)
	}
	if role != "" {
		if err := c.st.MarkHolder(ctx, n.claim, id); err != nil {
			c.t.Fatal(err)
		}
	}
	return n
}

// command waits until node has a pending command of kind and returns it.
func (c *cluster) command(node, kind string) lease.Command {
	c.t.Helper()
	var got lease.Command
	waitFor(c.t, kind+" command for "+node, func() bool {
		for _, cmd := range c.view().Commands[node] {
			if cmd.Kind == kind {
				got = cmd
				return true
			}
		}
		return false
	})
	return got
}

func TestLiveCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newCluster(t, leasetest.Start(t), "live")
	c.mustCLI(exitOK, "apply", "-f", writeFile(t, "cluster.yaml", testSpec))
	a := c.join(ctx, "node-a", "active", "web")
	b := c.join(ctx, "node-b", "active", "db")
	c.join(ctx, "node-d", "standby", "")

	cs := c.status()
	if !cs.Held() || cs.Roles[0].Holder != "node-a" || cs.Roles[0].Token != a.claim.Token || cs.Roles[0].Since.IsZero() {
		t.Fatalf("all held: %+v", cs)
	}
	if n, _ := findNode(cs, "node-a"); n.LeaseLeft <= 0 || n.State != "active" || strings.Join(n.Roles, ",") != "web" {
		t.Errorf("node-a: %+v", n)
	}
	out := c.mustCLI(exitOK, "status")
	if !strings.Contains(out, "all held") || !strings.Contains(out, "node-a") {
		t.Errorf("status table:\n%s", out)
	}

	t.Run("move validation", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"already there", []string{"web", "--to", "node-a"}, exitOK, "already on node-a"},
			{"unknown role", []string{"nope", "--to", "node-d"}, exitUsage, `unknown role "nope" (roles: web, db)`},
			{"unknown node", []string{"web", "--to", "node-z"}, exitUsage, `unknown node "node-z"`},
			{"target full", []string{"web", "--to", "node-b"}, exitFailure, "max_roles_per_node is 1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if out := c.mustCLI(tc.code, append([]string{"role", "move"}, tc.args...)...); !strings.Contains(out, tc.want) {
					t.Errorf("output lacks %q:\n%s", tc.want, out)
				}
			})
		}
	})

	t.Run("move times out without an agent", func(t *testing.T) {
		out := c.mustCLI(exitFailure, "role", "move", "web", "--to", "node-d", "--timeout", "500ms")
		if !strings.Contains(out, "timed out after 500ms") || !strings.Contains(out, "now held by node-a") {
			t.Errorf("move timeout:\n%s", out)
		}
		cmd := c.command("node-a", lease.CommandMove)
		if cmd.Role != "web" || cmd.To != "node-d" {
			t.Errorf("move command: %+v", cmd)
		}
		if err := c.st.DoneCommand(ctx, "node-a", cmd.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("remove refuses", func(t *testing.T) {
		if out := c.mustCLI(exitFailure, "node", "remove", "node-a"); !strings.Contains(out, "node-a holds web: drain it first") {
			t.Errorf("remove a holder:\n%s", out)
		}
		if out := c.mustCLI(exitFailure, "node", "remove", "node-d"); !strings.Contains(out, "live and not cordoned") {
			t.Errorf("remove a live node:\n%s", out)
		}
	})

	t.Run("watch redraws on change", func(t *testing.T) {
		wctx, stop := context.WithCancel(ctx)
		var out syncBuffer
		done := make(chan int, 1)
		go func() { done <- run(wctx, c.args([]string{"status", "--watch"}), &out, &bytes.Buffer{}) }()
		waitFor(t, "first frame", func() bool { return strings.Contains(out.String(), "all held") })
		// node-b dies: its lease goes, and db with it.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := b.sess.Close(cctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "degraded frame", func() bool { return strings.Contains(out.String(), "DEGRADED: 1 unheld (db)") })
		stop()
		if code := <-done; code != exitOK {
			t.Errorf("watch exit code %d after interrupt", code)
		}
		if n := strings.Count(out.String(), "--- "); n < 2 {
			t.Errorf("watch printed %d frames:\n%s", n, out.String())
		}
	})

	t.Run("drain waits for release", func(t *testing.T) {
		done := make(chan string, 1)
		go func() {
			stdout, stderr, code := runCLI(t, c.args([]string{"node", "drain", "node-a", "--wait", "--timeout", "20s"})...)
			done <- codeStr(code) + stdout + stderr
		}()
		cmd := c.command("node-a", lease.CommandDrain)
		last := lease.LastHolder{Node: "node-a", NodeID: a.id, Token: a.claim.Token, Clean: true, Reason: "drain", Time: time.Now()}
		if err := c.st.Release(ctx, a.claim, &last, ""); err != nil {
			t.Fatal(err)
		}
		if err := c.st.DoneCommand(ctx, "node-a", cmd.ID); err != nil {
			t.Fatal(err)
		}
		if out := <-done; !strings.HasPrefix(out, "0") || !strings.Contains(out, "node node-a drained") {
			t.Errorf("drain --wait:\n%s", out)
		}
		v := c.view()
		if !v.Cordoned["node-a"] || v.Last["web"].Node != "node-a" || !v.Last["web"].Clean {
			t.Errorf("after drain: cordoned %v, last %+v", v.Cordoned["node-a"], v.Last["web"])
		}
		if out := c.mustCLI(exitDegraded, "status"); !strings.Contains(out, "node-a (clean)") {
			t.Errorf("status LAST column:\n%s", out)
		}
	})

	t.Run("remove live node", func(t *testing.T) {
		done := make(chan string, 1)
		go func() {
			stdout, stderr, code := runCLI(t, c.args([]string{"node", "remove", "node-a", "--timeout", "20s"})...)
			done <- codeStr(code) + stdout + stderr
		}()
		cmd := c.command("node-a", lease.CommandRemove)
		if cmd.Force {
			t.Errorf("remove without --force sent Force")
		}
		// The agent leaves: its session ends, its record goes.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := a.sess.Close(cctx); err != nil {
			t.Fatal(err)
		}
		if out := <-done; !strings.HasPrefix(out, "0") || !strings.Contains(out, "node node-a removed") {
			t.Errorf("remove live node:\n%s", out)
		}
		if _, known := c.view().IDs["node-a"]; known {
			t.Error("node-a id still allocated")
		}
	})
}

func codeStr(code int) string { return string(rune('0' + code)) }
