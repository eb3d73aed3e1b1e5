package takeover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
)

// testTTL is short so tests are quick, but not 1 s: the suite shares 2 cores with the
// race detector, and a 1 s lease rightly demotes its holder when a keepalive is starved
// for 700 ms, which is not what most of these tests are about.
const testTTL = 2 * time.Second

// farm runs in-process agents against one real embedded etcd.
type farm struct {
	t      *testing.T
	etcd   *leasetest.Etcd
	store  *lease.Store
	agents map[string]*runningAgent
}

type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan error
}

func newFarm(t *testing.T) *farm {
	t.Helper()
	e := leasetest.Start(t)
	cli := e.Client(t)
	f := &farm{t: t, etcd: e, store: lease.NewStore(cli, lease.Prefix("test"), nil), agents: map[string]*runningAgent{}}
	t.Cleanup(func() {
		for name := range f.agents {
			f.stop(name)
		}
	})
	return f
}

func (f *farm) config(name string) Config {
	return Config{Node: name, Cluster: "test", Prefix: lease.Prefix("test"),
		Etcd:         EtcdConfig{Endpoints: f.etcd.Endpoints(), DialTimeout: 2 * time.Second},
		TTL:          testTTL,
		HealthListen: "127.0.0.1:0", StateDir: f.t.TempDir(), LogFormat: "console", LogLevel: "info"}
}

func (f *farm) start(name string) *runningAgent {
	f.t.Helper()
	return f.startWith(f.config(name))
}

func (f *farm) startWith(cfg Config) *runningAgent {
	f.t.Helper()
	name := cfg.Node
	a, err := NewAgent(cfg, zaptest.NewLogger(f.t).Named(name))
	if err != nil {
		f.t.Fatalf("new agent %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	f.agents[name] = ra
	return ra
}

// stop shuts an agent down gracefully and waits for Run to return.
func (f *farm) stop(name string) error {
	ra, ok := f.agents[name]
	if !ok {
		return nil
	}
	delete(f.agents, name)
	ra.cancel()
	select {
	case err := <-ra.done:
		return err
	case <-time.After(30 * time.Second):
		f.t.Errorf("agent %s did not stop", name)
		return errors.New("timeout")
	}
}

func (f *farm) apply(spec string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := f.store.PutSpec(ctx, []byte(spec), 0, true); err != nil {
		f.t.Fatalf("apply: %v", err)
	}
}

// waitView polls etcd until cond holds, bounded.
func (f *farm) waitView(desc string, cond func(v *lease.View) bool) *lease.View {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var v *lease.View
	for {
		var err error
		v, err = f.store.View(ctx)
		if err == nil && cond(v) {
			return v
		}
		select {
		case <-ctx.Done():
			f.t.Fatalf("timed out waiting for %s; last view: claims=%v nodes=%v", desc, claimsOf(v), statesOf(v))
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func claimsOf(v *lease.View) map[string]string {
	m := map[string]string{}
	if v != nil {
		for r, c := range v.Claims {
			m[r] = c.Node
		}
	}
	return m
}

func statesOf(v *lease.View) map[string]string {
	m := map[string]string{}
	if v != nil {
		for n, rec := range v.Nodes {
			m[n] = rec.State
		}
	}
	return m
}

func holderIs(role, node string) func(v *lease.View) bool {
	return func(v *lease.View) bool { c, ok := v.Claims[role]; return ok && c.Node == node }
}

func stateIs(node, state string) func(v *lease.View) bool {
	return func(v *lease.View) bool { rec, ok := v.Nodes[node]; return ok && rec.State == state }
}

func all(conds ...func(v *lease.View) bool) func(v *lease.View) bool {
	return func(v *lease.View) bool {
		for _, c := range conds {
			if !c(v) {
				return false
			}
		}
		return true
	}
}

// roleSpec is an exec role running a long sleep, preferred on the given nodes.
func roleSpec(name string, preferred ...string) string {
	p := ""
	if len(preferred) > 0 {
		p = fmt.Sprintf("    preferred_nodes: [%s]\n", strings.Join(preferred, ", "))
	}
	return fmt.Sprintf("  - name: %s\n%s    exec:\n      command: [sleep, \"3600\"]\n      stop_timeout: 2s\n", name, p)
}

func spec(roles ...string) string { return "roles:\n" + strings.Join(roles, "") }

// findExec finds a role's executable by the UNDERSTUDY_* environment the agent gave it.
func findExec(t *testing.T, node, role string) int {
	t.Helper()
	want := []string{"UNDERSTUDY_NODE=" + node, "UNDERSTUDY_ROLE=" + role}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(d + "/environ")
		if err != nil {
			continue
		}
		vars := strings.Split(string(env), "\x00")
		if slices.Contains(vars, want[0]) && slices.Contains(vars, want[1]) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	t.Fatalf("no executable of role %s on %s", role, node)
	return 0
}

func (a *Agent) lastAck() time.Time {
	a.mu.Lock()
	s := a.sess
	a.mu.Unlock()
	return s.LastAck()
}

func pidAlive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

func TestStartOfDayFollowsPreferredNodes(t *testing.T) {
	f := newFarm(t)
	f.apply(spec(roleSpec("r1", "a"), roleSpec("r2", "b")))
	f.start("c") // a non-preferred node joining first leaves never-held roles to the preferred ones for a grace period
	f.waitView("c standby", stateIs("c", StateStandby))
	f.start("a")
	f.start("b")
	v := f.waitView("a and b hold their roles", all(holderIs("r1", "a"), holderIs("r2", "b"),
		stateIs("a", StateActive), stateIs("b", StateActive), stateIs("c", StateStandby)))
	if v.Claims["r1"].Token <= 0 {
		t.Fatalf("token = %d, want > 0", v.Claims["r1"].Token)
	}
}

func TestGracefulStopHandsRoleToStandbyWithoutFencing(t *testing.T) {
	f := newFarm(t)
	f.apply(spec(roleSpec("r1", "a")))
	f.start("a")
	f.waitView("a holds r1", holderIs("r1", "a"))
	f.start("b")
	v := f.waitView("a active, b standby", all(stateIs("a", StateActive), stateIs("b", StateStandby)))
	tok := v.Claims["r1"].Token
	pid := findExec(t, "a", "r1")
	f.waitView("a active", stateIs("a", StateActive))
	if err := f.stop("a"); err != nil {
		t.Fatalf("stop a: %v", err)
	}
	if pidAlive(pid) {
		t.Fatalf("a's executable (pid %d) still runs after a stopped", pid)
	}
	// The claim appears one transaction before the last-holder record (MarkHolder).
	v = f.waitView("b takes r1 and is recorded as holder", all(holderIs("r1", "b"),
		func(v *lease.View) bool { return v.Last["r1"].Node == "b" }))
	if v.Claims["r1"].Token <= tok {
		t.Fatalf("token did not grow: %d -> %d", tok, v.Claims["r1"].Token)
	}
	if last := v.Last["r1"]; last.Node != "b" || last.Clean {
		t.Fatalf("last = %+v, want b (unclean while held)", last)
	}
	evs, err := f.store.Events(context.Background(), "r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var rel *lease.Event
	for i := range evs {
		if evs[i].Kind == EventRelease && evs[i].Node == "a" {
			rel = &evs[i]
		}
	}
	if rel == nil {
		t.Fatalf("no release event from a in %+v", evs)
	}
}

func TestTwoOrphansTakenByDifferentStandbys(t *testing.T) {
	f := newFarm(t)
	f.apply(spec(roleSpec("r1", "a"), roleSpec("r2", "b")))
	f.start("a")
	f.start("b")
	f.waitView("a, b active", all(holderIs("r1", "a"), holderIs("r2", "b")))
	f.start("c")
	f.start("d")
	f.waitView("c, d standby", all(stateIs("c", StateStandby), stateIs("d", StateStandby)))
	// Both holders vanish at once.
	f.agents["a"].cancel()
	f.agents["b"].cancel()
	v := f.waitView("both roles held by c and d", func(v *lease.View) bool {
		r1, ok1 := v.Claims["r1"]
		r2, ok2 := v.Claims["r2"]
		return ok1 && ok2 && r1.Node != r2.Node &&
			(r1.Node == "c" || r1.Node == "d") && (r2.Node == "c" || r2.Node == "d")
	})
	t.Logf("r1 -> %s, r2 -> %s", v.Claims["r1"].Node, v.Claims["r2"].Node)
}

// The safety rule: an active node cut off from etcd stops its executable before etcd
// could expire its lease and hand the role to someone else.
func TestCutOffActiveStopsBeforeLeaseExpiry(t *testing.T) {
	f := newFarm(t)
	f.apply(spec(roleSpec("r1", "a")))
	a := f.start("a")
	f.waitView("a holds r1", all(holderIs("r1", "a"), stateIs("a", StateActive)))
	pid := findExec(t, "a", "r1")
	if !pidAlive(pid) {
		t.Fatalf("exec pid %d not running", pid)
	}
	f.etcd.Stop()
	// The earliest moment etcd could expire the lease is the send time of the last
	// acknowledged keepalive plus the TTL; the agent's view of that is LastAck.
	lastAck := a.lastAck()
	deadline := lastAck.Add(a.Local().TTL)
	for pidAlive(pid) {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("executable still running %s after the lease could have expired", time.Since(deadline))
		}
		time.Sleep(5 * time.Millisecond)
	}
	died := time.Now()
	if died.After(deadline) {
		t.Fatalf("executable died %s after the earliest lease expiry", died.Sub(deadline))
	}
	t.Logf("executable stopped %s before the earliest possible lease expiry", deadline.Sub(died))
	if roles := a.Local().Roles; len(roles) != 0 {
		t.Fatalf("health endpoint still reports roles %v after the demotion", roles)
	}
	f.etcd.Restart(t)
	f.waitView("a rejoins and holds r1 again", holderIs("r1", "a"))
}

func TestDrainMoveRemove(t *testing.T) {
	f := newFarm(t)
	f.apply(spec(roleSpec("r1", "a")))
	f.start("a")
	f.waitView("a holds r1", holderIs("r1", "a"))
	f.start("b")
	f.start("c")
	f.waitView("b, c standby", all(stateIs("b", StateStandby), stateIs("c", StateStandby)))
	ctx := context.Background()

	if err := f.store.SendCommand(ctx, "a", lease.Command{Kind: CommandMove, Role: "r1", To: "c"}); err != nil {
		t.Fatal(err)
	}
	f.waitView("r1 moved to c and marked", all(holderIs("r1", "c"), stateIs("c", StateActive),
		func(v *lease.View) bool { return v.Last["r1"].Node == "c" && !v.Last["r1"].Clean }))

	if err := f.store.SetCordoned(ctx, "c", true); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SendCommand(ctx, "c", lease.Command{Kind: CommandDrain}); err != nil {
		t.Fatal(err)
	}
	f.waitView("c drained, r1 on a or b", all(stateIs("c", StateCordoned), func(v *lease.View) bool {
		h := v.Claims["r1"].Node
		return h == "a" || h == "b"
	}))

	if err := f.store.SendCommand(ctx, "c", lease.Command{Kind: CommandRemove}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-f.agents["c"].done:
		if !errors.Is(err, ErrRemoved) {
			t.Fatalf("Run = %v, want ErrRemoved", err)
		}
		delete(f.agents, "c")
	case <-time.After(10 * time.Second):
		t.Fatal("c did not leave after remove")
	}
	v := f.waitView("c gone", func(v *lease.View) bool { _, ok := v.IDs["c"]; _, live := v.Nodes["c"]; return !ok && !live })
	if len(v.Claims) != 1 {
		t.Fatalf("claims = %v", claimsOf(v))
	}
}

func TestFailingExecIsRolledBackAndNextStandbyTries(t *testing.T) {
	f := newFarm(t)
	// The executable exists only on b: a's takeover fails, it rolls back, b takes over.
	dir := t.TempDir()
	f.apply("roles:\n  - name: r1\n    preferred_nodes: [a]\n    exec:\n      command: [sh, -c, 'test \"$UNDERSTUDY_NODE\" = b && exec sleep 3600; exit 3']\n      dir: " + dir + "\n")
	f.start("a")
	f.waitView("a tried and released", func(v *lease.View) bool {
		_, held := v.Claims["r1"]
		return !held && v.Nodes["a"].State == StateStandby
	})
	f.start("b")
	f.waitView("b holds r1", holderIs("r1", "b"))
	evs, err := f.store.Events(context.Background(), "r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	failed := false
	for _, e := range evs {
		if e.Kind == EventTakeoverFailed && e.Node == "a" {
			failed = true
		}
	}
	if !failed {
		t.Fatalf("no takeover-failed event from a: %+v", evs)
	}
}

func TestProbationUntilQualified(t *testing.T) {
	f := newFarm(t)
	f.apply("roles:\n  - name: r1\n    exec:\n      command: [/nonexistent/binary]\n")
	f.start("a")
	v := f.waitView("a in probation with a failed check", func(v *lease.View) bool {
		q, ok := v.Qualified["a"]
		return ok && !q.Passed && v.Nodes["a"].State == StateProbation
	})
	if _, held := v.Claims["r1"]; held {
		t.Fatal("unqualified node claimed a role")
	}
	f.apply(spec(roleSpec("r1")))
	f.waitView("a re-qualified and active", all(holderIs("r1", "a"), stateIs("a", StateActive)))
}

func TestFailbackHandsRoleToPreferredNode(t *testing.T) {
	f := newFarm(t)
	f.apply("failback: true\n" + spec(roleSpec("r1", "a")))
	f.start("b") // not preferred; takes r1 after the start-of-day grace because a is absent
	f.waitView("b holds r1", all(holderIs("r1", "b"), stateIs("b", StateActive)))
	f.start("a")
	v := f.waitView("r1 failed back to a", all(holderIs("r1", "a"), stateIs("a", StateActive), stateIs("b", StateStandby)))
	if last := v.Last["r1"]; last.Node != "a" {
		t.Fatalf("last = %+v", last)
	}
}

func TestNoFailbackByDefault(t *testing.T) {
	f := newFarm(t)
	f.apply(spec(roleSpec("r1", "a")))
	f.start("b")
	f.waitView("b holds r1", all(holderIs("r1", "b"), stateIs("b", StateActive)))
	f.start("a")
	f.waitView("a standby", stateIs("a", StateStandby))
	time.Sleep(3 * testTTL) // give a wrong failback every chance to happen
	f.waitView("b still holds r1", all(holderIs("r1", "b"), stateIs("a", StateStandby)))
}

func TestRepeatedTakeoverFailuresCordonTheNode(t *testing.T) {
	f := newFarm(t)
	bad := "    exec:\n      command: [sh, -c, 'exit 3']\n"
	f.apply("roles:\n  - name: r1\n" + bad + "  - name: r2\n" + bad + "  - name: r3\n" + bad)
	f.start("a")
	v := f.waitView("a cordoned itself", func(v *lease.View) bool { return v.Cordoned["a"] })
	if len(v.Claims) != 0 {
		t.Fatalf("claims = %v, want none", claimsOf(v))
	}
	f.waitView("a shows cordoned", stateIs("a", StateCordoned))
}

// A failing health check restarts the role's executable on the same node, keeping the
// claim and token, up to exec.restarts times; then the role is released to a standby.
func TestFailingHealthRestartsLocallyThenReleases(t *testing.T) {
	f := newFarm(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	f.apply(`roles:
  - name: r1
    preferred_nodes: [a]
    exec:
      command: [sh, -c, 'rm -f ` + bad + `; exec sleep 3600']
      restarts: 1
    health:
      type: exec
      command: [sh, -c, 'test ! -f ` + bad + `']
      interval: 100ms
      failure_threshold: 2
      start_timeout: 5s
`)
	f.start("a")
	v := f.waitView("a holds r1", all(holderIs("r1", "a"), stateIs("a", StateActive)))
	token := v.Claims["r1"].Token
	f.start("b")
	f.waitView("b standby", stateIs("b", StateStandby))
	pid := findExec(t, "a", "r1")

	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitRestart := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for {
			evs, err := f.store.Events(ctx, "r1", 0)
			if err == nil && len(evs) > 0 && evs[len(evs)-1].Kind == EventRestart {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no restart event: %+v", evs)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitRestart()
	v = f.waitView("a still holds r1 with the same token", all(holderIs("r1", "a"), stateIs("a", StateActive)))
	if v.Claims["r1"].Token != token {
		t.Fatalf("token changed %d -> %d on a local restart", token, v.Claims["r1"].Token)
	}
	if np := findExec(t, "a", "r1"); np == pid {
		t.Fatalf("executable not restarted (pid %d)", pid)
	}

	// The budget (restarts: 1) is spent: the next failure releases the role to b.
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitView("b took r1 over", all(holderIs("r1", "b"), stateIs("b", StateActive)))
}

// TestStrandedOwnClaimIsTakenOver: a claim under a standby's own lease that it does not
// run (a TryClaim etcd committed whose answer was lost to a timeout) is taken over by
// that node, with the executable started, instead of leaving the role unserved until
// the node's lease ends.
func TestStrandedOwnClaimIsTakenOver(t *testing.T) {
	f := newFarm(t)
	f.start("a") // no spec yet: a joins (on probation) and claims nothing
	v := f.waitView("a's node record", func(v *lease.View) bool { return v.Nodes["a"].Lease != 0 })
	// The claim appears before the spec does, so a never decided to claim it.
	key := lease.Prefix("test") + "roles/r1/claim"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f.store.Client().Put(ctx, key, "a", clientv3.WithLease(clientv3.LeaseID(v.Nodes["a"].Lease))); err != nil {
		t.Fatal(err)
	}
	f.apply(spec(roleSpec("r1")))
	f.waitView("a active with r1", all(holderIs("r1", "a"), stateIs("a", StateActive)))
	if pid := findExec(t, "a", "r1"); pid == 0 {
		t.Fatal("r1's executable is not running on a")
	}
}

// An agent stopped while etcd is out of reach, before it ever joined, exits cleanly
// (nil, so `understudy agent` exits 0 on SIGTERM), as it does once joined.
func TestStopBeforeJoiningIsClean(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() // nothing listens here once closed
	_ = ln.Close()
	cfg := Config{Node: "a", Cluster: "test", Prefix: lease.Prefix("test"),
		Etcd: EtcdConfig{Endpoints: []string{dead}, DialTimeout: time.Second}, TTL: testTTL,
		StateDir: t.TempDir(), LogFormat: "console", LogLevel: "info"}
	a, err := NewAgent(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// Let it fail at least one node-id allocation, then stop it as SIGTERM would.
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after a stop before joining = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
