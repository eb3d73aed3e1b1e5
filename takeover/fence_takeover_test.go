//go:build linux

package takeover

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence"
	"github.com/understudy-ha/understudy/fence/iscsi"
	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
	"github.com/understudy-ha/understudy/lease"
)

// cutProxy forwards TCP from a loopback port to one target until Cut, which drops every
// connection and refuses new ones: a node cut off from etcd while everything else works.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.Cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[u] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut drops every connection and refuses new ones until Heal.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *cutProxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// A holder cut off from etcd (but not from the SAN) demotes itself; the standby that
// takes over fences it with PREEMPT AND ABORT on a real tgtd LUN, and the target then
// rejects the old holder's writes through the very session it registered with.
func TestTakeoverFencesUncleanHolderOnRealTarget(t *testing.T) {
	tg := tgtdtest.Start(t)
	url := tg.URL(1)
	f := newFarm(t)
	f.apply(`roles:
  - name: r1
    preferred_nodes: [a]
    fence:
      method: scsi
      devices: [["` + url + `"]]
    exec:
      command: [sleep, "3600"]
`)
	proxy := newCutProxy(t, f.etcd.Endpoints()[0][len("http://"):])
	cfg := f.config("a")
	cfg.Etcd.Endpoints = []string{proxy.URL()}
	a := f.startWith(cfg)
	f.waitView("a holds r1", all(holderIs("r1", "a"), stateIs("a", StateActive)))
	f.start("b")
	v := f.waitView("b standby", stateIs("b", StateStandby))
	aKey, _ := fence.NewKey("test", v.IDs["a"])
	bKey, _ := fence.NewKey("test", v.IDs["b"])

	// a's own session to the LUN: it registered and may write.
	aSess, err := a.san.session(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeBlock(aSess); err != nil {
		t.Fatalf("holder a cannot write before the failover: %v", err)
	}

	proxy.Cut()
	v = f.waitView("b took r1 over", all(holderIs("r1", "b"), stateIs("b", StateActive)))
	if last := v.Last["r1"]; last.Node != "b" {
		t.Fatalf("last = %+v", last)
	}
	evs, err := f.store.Events(context.Background(), "r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	ev := evs[len(evs)-1]
	if ev.Kind != EventTakeover || ev.Node != "b" || ev.From != "a" {
		t.Fatalf("last event = %+v", ev)
	}
	for _, s := range ev.Steps {
		if s.Name == "fence" && s.Err != "" {
			t.Fatalf("fence step failed: %+v", s)
		}
	}

	// The target enforces it: a's key is gone, b's remains, a's writes are refused.
	dev := &fence.Device{Name: url, Paths: []fence.Transport{aSess}}
	regs, err := dev.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if regs.Has(aKey) || !regs.Has(bKey) {
		t.Fatalf("keys after fence = %v; want %v without %v", regs.Keys, bKey, aKey)
	}
	if err := writeBlock(aSess); !errors.Is(err, scsi.ErrReservationConflict) {
		t.Fatalf("fenced holder's write: err = %v, want reservation conflict", err)
	}

	// a comes back: it rejoins as a standby, no failback, registered again.
	proxy.Heal()
	f.waitView("a standby again", all(stateIs("a", StateStandby), holderIs("r1", "b")))
}

func writeBlock(s *iscsi.Session) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := s.Device(ctx)
	if err != nil {
		return err
	}
	buf := make([]byte, d.BlockSize())
	copy(buf, "understudy")
	_, err = d.WriteAtContext(ctx, buf, 0)
	return err
}

// Qualification registers the key on the role's LUN and records its identity; a node that
// sees a different LUN behind the same spec than its peers fails with a precise message.
func TestQualificationComparesLUNIdentity(t *testing.T) {
	tg := tgtdtest.Start(t)
	f := newFarm(t)
	f.apply(`roles:
  - name: r1
    fence:
      method: scsi
      devices: [["` + tg.URL(1) + `"]]
    exec:
      command: [sleep, "3600"]
`)
	ctx := context.Background()
	_, rev, err := f.store.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Node x already qualified against this spec, and saw another LUN.
	if err := f.store.PutQualification(ctx, "x", lease.Qualification{Passed: true, SpecRev: rev, Time: time.Now(),
		Checks: []lease.Check{{Role: "r1", Name: "fence", Passed: true, Detail: identityPrefix + "naa.6001405000000000000000000000dead"}}}); err != nil {
		t.Fatal(err)
	}
	f.start("a")
	v := f.waitView("a qualified (and failed)", func(v *lease.View) bool { q, ok := v.Qualified["a"]; return ok && q.SpecRev == rev })
	q := v.Qualified["a"]
	if q.Passed {
		t.Fatalf("a passed qualification against a different LUN: %+v", q)
	}
	var fc lease.Check
	for _, c := range q.Checks {
		if c.Name == "fence" {
			fc = c
		}
	}
	if fc.Passed || !strings.Contains(fc.Detail, "differs from node x's") {
		t.Fatalf("fence check = %+v, want a failure naming node x", fc)
	}
	// And the key really registered on the LUN during the check.
	id := v.IDs["a"]
	key, _ := fence.NewKey("test", id)
	sess, err := iscsi.Dial(ctx, mustTarget(t, tg.URL(1)), iscsi.Config{InitiatorName: "iqn.2026-11.dev.understudy:test.probe", ISID: iscsi.ISIDFromNodeID(99)})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(ctx)
	regs, err := (&fence.Device{Name: "lun", Paths: []fence.Transport{sess}}).Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !regs.Has(key) {
		t.Fatalf("keys = %v, want %v registered by qualification", regs.Keys, key)
	}
}

func mustTarget(t *testing.T, url string) iscsi.Target {
	t.Helper()
	tt, err := iscsi.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

// keepRunningFarm starts a cluster with etcd_outage keep-running and one SCSI-fenced
// role r1 held by a, b standing by; it returns r1's token and the pid of a's executable.
func keepRunningFarm(t *testing.T) (f *farm, token int64, pid int) {
	tg := tgtdtest.Start(t)
	f = newFarm(t)
	f.apply(`etcd_outage: keep-running
roles:
  - name: r1
    preferred_nodes: [a]
    fence:
      method: scsi
      devices: [["` + tg.URL(1) + `"]]
    exec:
      command: [sleep, "3600"]
`)
	f.start("a")
	v := f.waitView("a holds r1", all(holderIs("r1", "a"), stateIs("a", StateActive)))
	f.start("b")
	f.waitView("b standby", stateIs("b", StateStandby))
	return f, v.Claims["r1"].Token, findExec(t, "a", "r1")
}

// etcd_outage: keep-running: with SCSI fencing, an active node keeps serving while etcd
// is down, and carries its claim (same token) over to a new session when etcd returns;
// the standby never takes the role.
func TestKeepRunningThroughEtcdOutage(t *testing.T) {
	f, token, pid := keepRunningFarm(t)

	f.etcd.Stop()
	time.Sleep(3 * testTTL) // well past the lease: a default node would have demoted
	if !pidAlive(pid) {
		t.Fatalf("a's executable stopped during the etcd outage; keep-running should keep it")
	}
	f.etcd.Restart(t)
	// When etcd is back, a carries its claim over to a new session: rebound (same token)
	// if the old lease still lived, re-adopted (new token, nothing restarted) if it had
	// expired. Whether a's new session comes before the old lease expires is a race with
	// gRPC's reconnect; if b wins it, b must have fenced a first, and a's watchdog must
	// have stopped the role. Either way one copy runs and storage stays safe.
	v := f.waitView("r1 held on a new lease", func(v *lease.View) bool {
		c, ok := v.Claims["r1"]
		rec, live := v.Nodes[c.Node]
		return ok && live && int64(c.Lease) == rec.Lease
	})
	switch c := v.Claims["r1"]; c.Node {
	case "a":
		if c.Token < token {
			t.Fatalf("token after the outage = %d, below %d", c.Token, token)
		}
		if !pidAlive(pid) || findExec(t, "a", "r1") != pid {
			t.Fatal("a's executable was restarted; it should have kept running")
		}
		t.Logf("a carried r1 over: token %d -> %d, same pid", token, c.Token)
	case "b":
		deadline := time.Now().Add(10 * time.Second)
		for pidAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if pidAlive(pid) {
			t.Fatal("b took r1 over but a's executable still runs: a was not stopped after being fenced")
		}
		evs, err := f.store.Events(context.Background(), "r1", 0)
		if err != nil {
			t.Fatal(err)
		}
		ev := evs[len(evs)-1]
		for _, s := range ev.Steps {
			if s.Name == "fence" && s.Err != "" {
				t.Fatalf("b took over without a verified fence: %+v", ev)
			}
		}
		t.Logf("b won the race after the outage, fenced a (token %d); a stopped its copy", c.Token)
	default:
		t.Fatalf("r1 held by %q", c.Node)
	}
}

// etcd_outage: keep-running, when every lease vanishes at once (what a leader frozen
// together with the quorum does when it resumes: it revokes every overdue lease, with no
// election to extend them): the active carries its role over to a new session under a
// new token, its executable untouched, and the standby, whose session is as young,
// leaves the role to it instead of fencing it.
func TestKeepRunningAfterEveryLeaseRevoked(t *testing.T) {
	f, token, pid := keepRunningFarm(t)

	cli := f.etcd.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Leases {
		if _, err := cli.Revoke(ctx, l.ID); err != nil {
			t.Fatalf("revoke lease %x: %v", l.ID, err)
		}
	}
	v := f.waitView("r1 held on a new lease", func(v *lease.View) bool {
		c, ok := v.Claims["r1"]
		rec, live := v.Nodes[c.Node]
		return ok && live && int64(c.Lease) == rec.Lease && c.Token > token
	})
	if c := v.Claims["r1"]; c.Node != "a" {
		t.Fatalf("r1 taken by %s after the leases vanished; a kept it running and should carry it over", c.Node)
	}
	if !pidAlive(pid) || findExec(t, "a", "r1") != pid {
		t.Fatal("a's executable was restarted; it should have kept running")
	}
	f.waitView("b standby again", stateIs("b", StateStandby))
	evs, err := f.store.Events(ctx, "r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Node == "b" && (ev.Kind == EventTakeover || ev.Kind == EventTakeoverFailed) {
			t.Fatalf("b tried to take r1: %+v", ev)
		}
	}
}

// Storage given as iscsi:// goes through each node's own session (FUSE + loop): after an
// unclean failover the new holder fences the old one, mounts the same ext4 and finds
// what the old holder's executable wrote.
func TestLUNStorageFailoverKeepsData(t *testing.T) {
	requireStorageTools(t)
	tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(64<<20))
	url := tg.URL(1)
	runOut(t, "mkfs.ext4", "-q", "-F", tg.BackingFile(1))
	mp := storageMountpoint(t)
	f := newFarm(t)
	f.apply(`roles:
  - name: r1
    preferred_nodes: [a]
    fence:
      method: scsi
      devices: [["` + url + `"]]
    storage:
      device: "` + url + `"
      fstype: ext4
      mountpoint: ` + mp + `
    exec:
      command: [sh, -c, 'echo "$UNDERSTUDY_NODE $UNDERSTUDY_TOKEN" >> ` + mp + `/log && sync && exec sleep 3600']
      dir: /
`)
	proxy := newCutProxy(t, f.etcd.Endpoints()[0][len("http://"):])
	cfg := f.config("a")
	cfg.Etcd.Endpoints = []string{proxy.URL()}
	// One host, one mountpoint: b joins first, because an agent's start-up cleanup
	// unmounts its roles' mountpoints (crash leftovers).
	f.start("b")
	f.waitView("b standby", stateIs("b", StateStandby))
	f.startWith(cfg)
	f.waitView("a holds r1", all(holderIs("r1", "a"), stateIs("a", StateActive)))

	proxy.Cut() // a demotes (unmounts) before its lease can expire; b fences and mounts
	f.waitView("b took r1 over", all(holderIs("r1", "b"), stateIs("b", StateActive)))
	log, err := os.ReadFile(filepath.Join(mp, "log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "a ") || !strings.HasPrefix(lines[1], "b ") {
		t.Fatalf("log on the LUN = %q, want a's line then b's", log)
	}
	evs, err := f.store.Events(context.Background(), "r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	ev := evs[len(evs)-1]
	var steps []string
	for _, s := range ev.Steps {
		steps = append(steps, s.Name)
	}
	if ev.Kind != EventTakeover || ev.From != "a" || !strings.Contains(strings.Join(steps, ","), "fence,mark,storage,exec") {
		t.Fatalf("takeover event = %s from %s steps %v", ev.Kind, ev.From, steps)
	}
	t.Logf("takeover steps: %+v", ev.Steps)
}

// An agent shut down while it keeps roles between sessions (etcd down, keep-running)
// still stops them: nothing may outlive the agent.
func TestKeepRunningShutdownDuringOutageStopsRoles(t *testing.T) {
	tg := tgtdtest.Start(t)
	f := newFarm(t)
	f.apply(`etcd_outage: keep-running
roles:
  - name: r1
    fence:
      method: scsi
      devices: [["` + tg.URL(1) + `"]]
    exec:
      command: [sleep, "3600"]
`)
	f.start("a")
	f.waitView("a holds r1", all(holderIs("r1", "a"), stateIs("a", StateActive)))
	pid := findExec(t, "a", "r1")
	f.etcd.Stop()
	time.Sleep(2 * testTTL) // the session is lost; a keeps the role between sessions
	if !pidAlive(pid) {
		t.Fatal("keep-running stopped the role during the outage")
	}
	if err := f.stop("a"); err != nil {
		t.Fatal(err)
	}
	if pidAlive(pid) {
		t.Fatalf("the role's executable (pid %d) outlived its agent", pid)
	}
	f.etcd.Restart(t)
}
