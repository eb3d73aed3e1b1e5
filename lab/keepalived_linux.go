//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/understudy-ha/understudy/lease"
)

// BenchKeepalived runs keepalived side by side with understudy's own benchmarks: the
// same lab network, the same client polling the VIP every 10 ms, the same figure (the
// longest gap in successful answers). See KeepalivedOptions for the modes and
// KeepalivedCaveat for what the figure does not include.
//
// Both nodes run `understudy demo-service` all the time (keepalived starts nothing), and
// keepalived in the foreground in their namespaces with pid files and logs under Dir.
// Both instances are `state BACKUP` with `nopreempt`, priorities 150 and 100, and the
// first node is started first, so it becomes the initial master. Why nopreempt: it is
// understudy's rule (no automatic failback), each trial moves the VIP exactly once, and
// a restored node rejoins as the backup without a second, unmeasured move; trials thus
// alternate direction, and the next trial fails the node that just took over.
//
// Everything BenchKeepalived starts is stopped before it returns, also on error; the
// VIP is removed from both nodes; Net itself is the caller's.
func BenchKeepalived(ctx context.Context, o KeepalivedOptions) (rep *KeepalivedReport, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	b, err := newKeepalivedBench(o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.logTails()
		}
		err = errors.Join(err, b.close())
	}()
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	rep = &KeepalivedReport{AdvertInt: o.AdvertInt, Version: o.Version, Mode: o.Mode, Caveat: KeepalivedCaveat}
	var gaps []time.Duration
	for i := 1; i <= o.Trials; i++ {
		tr, err := b.trial(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("lab: keepalived %s trial %d (%s -> %s): %w", o.Mode, i, tr.From, tr.To, err)
		}
		rep.Trials, gaps = append(rep.Trials, tr), append(gaps, tr.Gap)
		_, _ = fmt.Fprintf(o.Progress, "trial %2d: %s -> %s  gap %s  act-to-served %s  (%d failed requests)\n",
			i, tr.From, tr.To, lease.CompactDuration(tr.Gap), lease.CompactDuration(tr.ActToServed), tr.Failed)
	}
	// The restored node must have rejoined as the backup, and the VIP stayed put.
	if err := b.waitStable(ctx, o.Nodes[b.master], o.Nodes[1-b.master]); err != nil {
		return nil, fmt.Errorf("lab: keepalived %s after the last trial: %w", o.Mode, err)
	}
	rep.Gap, rep.EndedOn = Summarise(gaps), o.Nodes[b.master]
	return rep, nil
}

// keepalivedBench is one run: its processes, and which node is the master now.
type keepalivedBench struct {
	o       KeepalivedOptions
	exe     string // keepalived's absolute path
	procs   *NetnsProcs
	tempDir bool // Dir was created here and is removed by close
	url     string
	hc      *http.Client // the client namespace's, for the stability probes
	master  int          // index in o.Nodes of the node expected to hold the VIP
}

// Names of keepalived's VRRP instance, log states and the per-node files.
const (
	keepalivedInstance = "lab"
	keepalivedVRID     = 60 // any id works: every lab network has its own bridge
	keepalivedMaster   = "MASTER"
	keepalivedBackup   = "BACKUP"
)

// keepalivedPriority of o.Nodes[0] and o.Nodes[1].
var keepalivedPriority = [2]int{150, 100}

func newKeepalivedBench(o KeepalivedOptions) (*keepalivedBench, error) {
	exe, err := exec.LookPath("keepalived")
	if err != nil {
		return nil, fmt.Errorf("lab: keepalived: find the executable: %w", err)
	}
	b := &keepalivedBench{o: o, exe: exe, procs: NewNetnsProcs(),
		url: "http://" + net.JoinHostPort(o.VIP, strconv.Itoa(o.Port)) + "/"}
	b.hc = &http.Client{Timeout: DefaultPollTimeout, Transport: &http.Transport{
		DisableKeepAlives: true, DialContext: o.Net.DialContext(o.Net.Client().NS)}}
	if b.o.Dir == "" {
		if b.o.Dir, err = os.MkdirTemp("", "understudy-keepalived-"); err != nil {
			return nil, fmt.Errorf("lab: keepalived: create a directory: %w", err)
		}
		b.tempDir = true
	} else if err := os.MkdirAll(b.o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: keepalived: create directory %s: %w", b.o.Dir, err)
	}
	return b, nil
}

func (b *keepalivedBench) file(node, suffix string) string {
	return filepath.Join(b.o.Dir, "keepalived-"+node+suffix)
}

// start writes both configurations, starts both services, then the first node's
// keepalived alone until it is master, then the second's.
func (b *keepalivedBench) start(ctx context.Context) error {
	for i, node := range b.o.Nodes {
		self, _ := b.o.Net.Node(node) // both checked by defaults
		peer, _ := b.o.Net.Node(b.o.Nodes[1-i])
		conf := keepalivedConfig(&b.o, node, keepalivedPriority[i], self, peer)
		if err := os.WriteFile(b.file(node, ".conf"), []byte(conf), 0o600); err != nil {
			return fmt.Errorf("lab: keepalived: write config of %s: %w", node, err)
		}
		if err := b.startService(node); err != nil {
			return err
		}
	}
	if err := b.startKeepalived(b.o.Nodes[0]); err != nil {
		return err
	}
	if err := b.waitState(ctx, b.o.Nodes[0], keepalivedMaster); err != nil {
		return err
	}
	return b.startKeepalived(b.o.Nodes[1])
}

// keepalivedConfig is node's configuration. It sets only what the benchmark needs and
// otherwise keeps keepalived's defaults (5 gratuitous ARPs at once on becoming master,
// a second burst 5 s later; tracking of eth0, so a down link means FAULT and the VIP
// is removed), so the figure is what a stock configuration gives. Unicast adverts to the
// peer: no dependence on multicast through the lab's bridge. No authentication: VRRPv3
// has none, and VRRPv2's is no security anyway.
func keepalivedConfig(o *KeepalivedOptions, node string, prio int, self, peer NetnsHost) string {
	adv := strconv.FormatFloat(o.AdvertInt.Seconds(), 'f', -1, 64)
	return fmt.Sprintf(`# understudy lab: keepalived of node %[1]s (generated; see lab/keepalived_linux.go)
global_defs {
	router_id %[1]s
	vrrp_version %[2]d
}

vrrp_instance %[3]s {
	state BACKUP
	nopreempt
	interface eth0
	virtual_router_id %[4]d
	priority %[5]d
	advert_int %[6]s
	unicast_src_ip %[7]s
	unicast_peer {
		%[8]s
	}
	virtual_ipaddress {
		%[9]s/24 dev eth0
	}
}
`, node, o.Version, keepalivedInstance, keepalivedVRID, prio, adv, self.Addr, peer.Addr, o.VIP)
}

// Answers the poller must get from the master before the action, and from the new
// master before the trial ends ("a little after" the move, so a flap back shows).
const (
	keepalivedBaseline = 5
	keepalivedSettle   = 20
)

// trial moves the VIP from the current master to the other node once, measures what
// the client saw, and brings the old master back as the backup.
func (b *keepalivedBench) trial(ctx context.Context, i int) (KeepalivedTrial, error) {
	from, to := b.o.Nodes[b.master], b.o.Nodes[1-b.master]
	tr := KeepalivedTrial{Trial: i, From: from, To: to}
	if err := b.waitStable(ctx, from, to); err != nil {
		return tr, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.o.StepTimeout)
	defer cancel()
	p, err := StartPoller(ctx, PollerOptions{URL: b.url, Dial: b.o.Net.DialContext(b.o.Net.Client().NS)})
	if err != nil {
		return tr, err
	}
	start := time.Now()
	act, err := b.measure(ctx, p, from, to)
	samples := p.Stop()
	end := time.Now()
	if err != nil {
		return tr, err
	}
	tr.Gap, _, _ = LongestGap(samples, start, end)
	first, _ := FirstFrom(samples, to, act) // measure saw it
	tr.ActToServed = first.End.Sub(act)
	for _, s := range samples {
		if !s.OK {
			tr.Failed++
		}
	}
	b.master = 1 - b.master
	return tr, b.restore(ctx, from)
}

// measure waits for a few answers from the master, acts on it, and waits until the
// other node answered keepalivedSettle times; it returns the moment of the action.
func (b *keepalivedBench) measure(ctx context.Context, p *Poller, from, to string) (time.Time, error) {
	if err := b.poll(ctx, "client answered by "+from, 0, answeredBy(p, from, time.Time{}, keepalivedBaseline)); err != nil {
		return time.Time{}, err
	}
	act := time.Now()
	var err error
	switch b.o.Mode {
	case KeepalivedKill:
		// The NIC first: a server losing power stops answering ARP at that instant,
		// while reaping its processes takes a moment.
		err = b.o.Net.SetLink(ctx, from, false)
		if err == nil {
			err = b.killKeepalived(from)
		}
		if err == nil {
			_, err = b.procs.Kill("service-" + from)
		}
	case KeepalivedLinkDown:
		err = b.o.Net.SetLink(ctx, from, false)
	case KeepalivedStop:
		err = b.stopKeepalived(from)
	}
	if err != nil {
		return act, fmt.Errorf("lab: keepalived: %s %s: %w", b.o.Mode, from, err)
	}
	return act, b.poll(ctx, "client answered by "+to, 0, answeredBy(p, to, act, keepalivedSettle))
}

// answeredBy is a check for poll: p got n answers from node that started after since.
func answeredBy(p *Poller, node string, since time.Time, n int) func() string {
	return func() string {
		got := 0
		for _, s := range p.Samples() {
			if s.OK && s.Reply.Node == node && !s.Start.Before(since) {
				got++
			}
		}
		if got < n {
			return fmt.Sprintf("%d of %d answers", got, n)
		}
		return ""
	}
}

// restore brings node back after the trial's action, as the backup.
func (b *keepalivedBench) restore(ctx context.Context, node string) error {
	switch b.o.Mode {
	case KeepalivedKill:
		if err := b.o.Net.Reboot(ctx, node); err != nil {
			return err
		}
		if err := b.startService(node); err != nil {
			return err
		}
		return b.startKeepalived(node)
	case KeepalivedLinkDown:
		// Its keepalived stayed MASTER while cut off; back on the link, two masters
		// would resolve by priority, not by who took over. Restart it first, as a node
		// whose link comes back after a reboot does, so it rejoins as the backup.
		if err := b.stopKeepalived(node); err != nil {
			return err
		}
		if err := b.o.Net.SetLink(ctx, node, true); err != nil {
			return err
		}
		return b.startKeepalived(node)
	default:
		return b.startKeepalived(node)
	}
}

// waitState polls (10 ms) until node's keepalived logged state.
func (b *keepalivedBench) waitState(ctx context.Context, node, state string) error {
	return b.poll(ctx, fmt.Sprintf("%s's keepalived %s", node, state), 0, func() string {
		got, err := b.keepalivedState(node)
		if err != nil {
			return err.Error()
		}
		if got != state {
			return fmt.Sprintf("state %q", got)
		}
		return ""
	})
}

// waitStable waits until master is MASTER, backup is BACKUP and the client is answered
// by master, all continuously for longer than the backup's master-down interval
// (3 adverts + skew): a backup that stays BACKUP that long is receiving the master's
// adverts, so the trial measures a whole detection, not the rest of a start-up timer.
func (b *keepalivedBench) waitStable(ctx context.Context, master, backup string) error {
	hold := 4*b.o.AdvertInt + b.o.AdvertInt*(256-time.Duration(keepalivedPriority[1]))/256
	return b.poll(ctx, fmt.Sprintf("%s master and %s backup, stable for %s", master, backup, hold), hold, func() string {
		for node, want := range map[string]string{master: keepalivedMaster, backup: keepalivedBackup} {
			got, err := b.keepalivedState(node)
			if err != nil {
				return err.Error()
			}
			if got != want {
				return fmt.Sprintf("%s is %q, want %s", node, got, want)
			}
		}
		pctx, cancel := context.WithTimeout(ctx, DefaultPollTimeout)
		defer cancel()
		rep, err := getReply(pctx, b.hc, b.url)
		if err != nil {
			return "client: " + err.Error()
		}
		if rep.Node != master {
			return "client answered by " + rep.Node
		}
		return ""
	})
}

// poll calls check every 10 ms until it returned "" (nothing wrong) continuously for
// hold, bounded by the step timeout; the error names desc and check's last complaint.
func (b *keepalivedBench) poll(ctx context.Context, desc string, hold time.Duration, check func() string) error {
	ctx, cancel := context.WithTimeout(ctx, b.o.StepTimeout)
	defer cancel()
	tick := time.NewTicker(serviceProbeInterval)
	defer tick.Stop()
	var since time.Time
	last := "not checked yet"
	for {
		switch why := check(); {
		case why != "":
			since, last = time.Time{}, why
		case since.IsZero():
			since = time.Now()
		}
		if !since.IsZero() && time.Since(since) >= hold {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w (last: %s)", ErrWait, desc, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// killLeftovers SIGKILLs every keepalived still running with one of confs (a VRRP
// child whose parent is gone is no child of ours) until none is left; zombies count as
// gone (init reaps orphans in its own time).
func killLeftovers(ctx context.Context, confs []string) error {
	tick := time.NewTicker(serviceProbeInterval)
	defer tick.Stop()
	for {
		left := keepalivedPIDs(confs)
		if len(left) == 0 {
			return nil
		}
		for _, pid := range left {
			_ = unix.Kill(pid, unix.SIGKILL) // ESRCH: it went meanwhile
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: leftover keepalived %v gone: %w", ErrWait, left, ctx.Err())
		case <-tick.C:
		}
	}
}

// keepalivedPIDs lists the live keepalived processes with one of confs in their
// arguments.
func keepalivedPIDs(confs []string) []int {
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range paths {
		raw, _ := os.ReadFile(p) // empty for a zombie or a process gone meanwhile
		argv := strings.Split(string(raw), "\x00")
		if filepath.Base(argv[0]) != "keepalived" || !slices.ContainsFunc(argv, func(a string) bool { return slices.Contains(confs, a) }) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
