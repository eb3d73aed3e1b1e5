package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// gapTail is how long the client keeps polling after the new holder first answered, so
// that a flapping answer right after the move still counts in the gap.
const gapTail = 300 * time.Millisecond

// BenchFailover fails the holder of role-a Trials times on the seed's start of day (a,
// b, c active, d standby) in the given Mode, brings the failed node back as the standby
// after each trial, and measures what a client polling the role every 10 ms sees, the
// failure-to-running time and the takeover's own steps. With Keepalived it then runs
// the same client measurement against keepalived in the same lab.
func BenchFailover(ctx context.Context, opts BenchOptions) (*FailoverReport, error) {
	var rep *FailoverReport
	err := withBenchFarm(ctx, &opts, func(f *Farm) error {
		rep = &FailoverReport{TTL: f.TTL(), Mode: opts.Mode, Detection: f.opts.Detection, Namespaces: f.Net() != nil}
		var fail, gap, detect []time.Duration
		steps := map[string][]time.Duration{}
		for i := 1; i <= opts.Trials; i++ {
			tr, err := failoverTrial(ctx, f, opts.Mode, opts.StepTimeout)
			if err != nil {
				return fmt.Errorf("lab: failover trial %d: %w", i, err)
			}
			tr.Trial = i
			rep.Trials = append(rep.Trials, tr)
			fail, gap, detect = append(fail, tr.FailToRunning), append(gap, tr.ClientGap), append(detect, tr.DetectToRunning)
			for _, s := range tr.Steps {
				steps[s.Name] = append(steps[s.Name], s.Duration)
			}
			_, _ = fmt.Fprintf(opts.Progress, "trial %2d: %s %s %s -> %s  client gap %s  fail-to-running %s  detect-to-running %s  (%s)\n",
				i, opts.Mode, tr.Role, tr.From, tr.To, lease.CompactDuration(tr.ClientGap), lease.CompactDuration(tr.FailToRunning),
				lease.CompactDuration(tr.DetectToRunning), lease.FormatSteps(tr.Steps))
		}
		rep.FailToRunning, rep.ClientGap, rep.DetectToRunning = Summarise(fail), Summarise(gap), Summarise(detect)
		rep.StepP50 = map[string]time.Duration{}
		for name, ds := range steps {
			rep.StepP50[name] = Summarise(ds).P50
		}
		if opts.Keepalived {
			return benchKeepalivedBeside(ctx, f, opts, rep)
		}
		return nil
	})
	return rep, err
}

// benchKeepalivedBeside runs keepalived between two more node namespaces of f's lab, in
// the same mode, at VRRPv2 1 s and VRRPv3 100 ms adverts.
func benchKeepalivedBeside(ctx context.Context, f *Farm, opts BenchOptions, rep *FailoverReport) error {
	nodes := [2]string{"ka1", "ka2"}
	for _, n := range nodes {
		if _, err := f.Net().AddNode(ctx, n); err != nil {
			return err
		}
	}
	for _, v := range []struct {
		version int
		advert  time.Duration
	}{{2, time.Second}, {3, 100 * time.Millisecond}} {
		_, _ = fmt.Fprintf(opts.Progress, "keepalived VRRPv%d advert_int %s, %s mode, same lab:\n", v.version, v.advert, opts.Mode)
		kr, err := BenchKeepalived(ctx, KeepalivedOptions{Binary: opts.Binary, Net: f.Net(),
			Nodes: nodes, AdvertInt: v.advert, Version: v.version, Mode: opts.Mode,
			Trials: opts.Trials, Dir: filepath.Join(f.Dir(), fmt.Sprintf("keepalived-v%d", v.version)),
			Log: opts.Log, Progress: opts.Progress})
		if err != nil {
			return fmt.Errorf("lab: keepalived VRRPv%d: %w", v.version, err)
		}
		rep.Keepalived = append(rep.Keepalived, kr)
	}
	return nil
}

// failoverTrial fails role-a's holder in mode and measures; then it brings the node back
// and waits until it is a standby again.
func failoverTrial(ctx context.Context, f *Farm, mode string, timeout time.Duration) (FailoverTrial, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*timeout)
	defer cancel()
	tr := FailoverTrial{Role: benchRole, Mode: mode}
	cs, err := f.Status(ctx)
	if err != nil {
		return tr, err
	}
	tr.From = Holder(cs, benchRole)
	before, err := f.Probe(ctx, benchRole)
	if err != nil {
		return tr, err
	}
	tr.OldToken = before.Token
	p, err := f.pollRole(ctx, benchRole)
	if err != nil {
		return tr, err
	}
	start := time.Now()
	failed, err := f.fail(ctx, tr.From, mode)
	if err != nil {
		p.Stop()
		return tr, err
	}
	after, at, err := f.WaitServed(ctx, benchRole, serviceProbeInterval, func(r Reply) bool {
		return r.Node != tr.From && r.Token > before.Token
	})
	if err == nil {
		err = Sleep(ctx, gapTail)
	}
	samples := p.Stop()
	if err != nil {
		return tr, err
	}
	tr.To, tr.NewToken, tr.FailToRunning = after.Node, after.Token, at.Sub(failed)
	if first, ok := FirstFrom(samples, after.Node, failed); ok && first.End.Before(at) {
		tr.FailToRunning = first.End.Sub(failed)
	}
	tr.ClientGap, _, _ = LongestGap(samples, start, time.Now())
	ev, err := f.WaitEvent(ctx, benchRole, func(ev lease.Event) bool {
		return ev.Kind == takeover.EventTakeover && ev.Token == after.Token
	})
	if err != nil {
		return tr, err
	}
	tr.DetectToRunning, tr.Steps = ev.Total, ev.Steps
	if err := f.bringBack(ctx, tr.From, mode); err != nil {
		return tr, err
	}
	_, err = f.WaitFor(ctx, tr.From+" standby again", func(cs takeover.ClusterStatus) bool {
		return IsStandby(cs, tr.From) && Holds(cs, tr.To, benchRole)
	})
	return tr, err
}

// fail makes node fail in mode and returns the moment it did.
func (f *Farm) fail(ctx context.Context, node, mode string) (time.Time, error) {
	switch mode {
	case ModeLinkDown:
		at := time.Now()
		return at, f.net.SetLink(ctx, node, false)
	case ModeStop:
		// Only the signal: the takeover may finish before the agent has exited.
		return f.procs.Signal(node, syscall.SIGTERM)
	default:
		return f.Kill(node)
	}
}

// bringBack undoes fail: links up (the agent rejoins by itself), or a boot.
func (f *Farm) bringBack(ctx context.Context, node, mode string) error {
	switch mode {
	case ModeLinkDown:
		return f.net.SetLink(ctx, node, true)
	case ModeStop:
		sctx, cancel := context.WithTimeout(ctx, stopTimeout)
		defer cancel()
		if err := f.Stop(sctx, node); err != nil { // already exiting: waits, SIGKILL at the bound
			return err
		}
		return f.StartNode(ctx, node)
	default:
		return f.Recover(ctx, node)
	}
}

// pollRole starts a client asking role's service every 10 ms, the way a user reaches it.
func (f *Farm) pollRole(ctx context.Context, role string) (*Poller, error) {
	r, err := f.Role(role)
	if err != nil {
		return nil, err
	}
	return StartPoller(ctx, PollerOptions{URL: "http://" + r.Addr() + "/", Dial: f.clientDial()})
}

// clientDial is how the lab's clients connect: from the client namespace, or ours.
func (f *Farm) clientDial() dialFunc {
	if f.net == nil {
		return nil
	}
	return f.net.DialContext(f.net.Client().NS)
}

// Sleep waits d (a scheduled pause of a benchmark or a fault's length, never a
// synchronisation) or until ctx ends, and returns ctx's error then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// StepOrder lists the step names of m in the order a takeover runs them.
func StepOrder(m map[string]time.Duration) []string {
	order := []string{"detect", "fence", "mark", "storage", "exec", "vip", "health"}
	var names []string
	for _, n := range order {
		if _, ok := m[n]; ok {
			names = append(names, n)
		}
	}
	for n := range m {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}
