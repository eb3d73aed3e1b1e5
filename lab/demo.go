package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// DefaultStepTimeout bounds every wait of the demo and the benchmarks.
const DefaultStepTimeout = 20 * time.Second

// DemoOptions configure RunDemo.
type DemoOptions struct {
	// Binary is the `understudy` executable the nodes run. Required.
	Binary string
	// Dir keeps the lab's files (etcd data, agent configs and logs); it must be missing
	// or empty. "" = a temporary directory removed at the end.
	Dir string
	// Keep leaves the lab running after the story until ctx is done (Ctrl-C), so the
	// operator can try the CLI against it.
	Keep bool
	// NoColour disables colours; they are only used when w is a terminal anyway.
	NoColour bool
	// TTL of the agents' leases; default 1 s.
	TTL time.Duration
	// StepTimeout bounds each wait; default DefaultStepTimeout.
	StepTimeout time.Duration
	// Log receives the lab's own diagnostics; nil discards them.
	Log *zap.Logger
	// Loopback runs the story on 127.0.0.1 without root: executables only, no
	// namespaces, storage, fencing or floating IPs.
	Loopback bool
}

// demoWriteEvery is the demo client's write rate on role-a.
const demoWriteEvery = 20 * time.Millisecond

// demo is one run of the story.
type demo struct {
	f      *Farm
	n      *narrator
	opts   DemoOptions
	writer *Writer // Netns mode: the client writing to role-a from start of day on
}

// RunDemo tells the seed's story on a lab cluster of real agent processes, printing each
// step with its elapsed time and the cluster status after each figure's steps: FIG. 5
// (A fails, D takes over, A recovers as the standby, no failback), then FIG. 7 (E is
// added, qualified and stands by; B fails and one of the two standbys takes over; the
// other is put to work with `role move`; a node is drained and removed).
//
// It returns nil when the story completed (and, with Keep, ctx ended afterwards), or the
// first failed step's error. Every process it started is stopped before it returns.
func RunDemo(ctx context.Context, w io.Writer, opts DemoOptions) (err error) {
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = DefaultStepTimeout
	}
	n := newNarrator(w, !opts.NoColour && IsTerminal(w))
	if opts.Loopback {
		n.section("understudy demo: N+M failover on 127.0.0.1")
		n.begin("Start the lab: an embedded etcd (lease TTL %s)", orTTL(opts.TTL))
	} else {
		n.section("understudy demo: N+M failover in a lab of network namespaces")
		n.begin("Start the lab: networks client 192.0.2.0/24, control 198.51.100.0/25, SAN 198.51.100.128/25; etcd; tgtd (lease TTL %s)", orTTL(opts.TTL))
	}
	f, err := NewFarm(ctx, Options{Binary: opts.Binary, Dir: opts.Dir, TTL: opts.TTL, Log: opts.Log, Netns: !opts.Loopback})
	if err != nil {
		return err
	}
	defer func() {
		n.begin("Stop the lab")
		if cerr := f.Close(); cerr != nil {
			err = errors.Join(err, cerr)
			return
		}
		n.done("every agent, service, namespace and loop device removed")
	}()
	if f.Net() != nil {
		n.done("namespaces %s-*, etcd on %s, iSCSI target on %s:3260, files in %s",
			f.Net().Prefix(), strings.Join(f.Endpoints(), ","), NetnsSANAddr, f.Dir())
	} else {
		n.done("etcd on %s, files in %s", strings.Join(f.Endpoints(), ","), f.Dir())
	}
	d := &demo{f: f, n: n, opts: opts}
	if err := d.fig5(ctx); err != nil {
		return d.failed(ctx, err)
	}
	if err := d.fig7(ctx); err != nil {
		return d.failed(ctx, err)
	}
	if err := d.checkWrites(ctx); err != nil {
		return d.failed(ctx, err)
	}
	if evs, err := f.History(ctx, "", 60); err == nil {
		n.section("Timeline (understudy history)")
		n.timeline(roleEvents(evs))
	}
	n.printf("%s\n", paint(n.colour, ansiBold, fmt.Sprintf("Story complete in %s.", lease.CompactDuration(time.Since(n.start)))))
	if opts.Keep {
		d.keep(ctx)
	}
	return nil
}

func orTTL(ttl time.Duration) time.Duration {
	if ttl == 0 {
		return DefaultTTL
	}
	return ttl
}

// failed turns a step's failure into the demo's error; an interrupt is reported as such.
func (d *demo) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		d.n.printf("\ninterrupted\n")
		return fmt.Errorf("lab: demo interrupted: %w", ctx.Err())
	}
	d.n.printf("\n%s %v\n", paint(d.n.colour, ansiRed, "FAILED:"), err)
	d.diagnose(ctx)
	return fmt.Errorf("lab: demo: %w", err)
}

// diagnoseLines is how much of each agent's log a failed demo prints.
const diagnoseLines = 40

// diagnose prints what a failed step needs for a post-mortem once the lab's directory
// is gone: the status, the whole history and the end of every agent's log.
func (d *demo) diagnose(ctx context.Context) {
	d.n.section("Diagnostics")
	d.n.status(ctx, d.f)
	if evs, err := d.f.History(ctx, "", 200); err == nil {
		d.n.timeline(evs)
	} else {
		d.n.note("history: %v", err)
	}
	for _, name := range d.f.Nodes() {
		d.n.printf("-- last %d lines of %s --\n", diagnoseLines, d.f.LogPath(name))
		tail, err := tailFile(d.f.LogPath(name), diagnoseLines)
		if err != nil {
			d.n.note("%v", err)
			continue
		}
		d.n.printf("%s\n", tail)
	}
}

// tailFile returns the last n lines of the file at path.
func tailFile(path string, n int) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n"), nil
}

// keep leaves the farm running until ctx ends and tells the operator how to reach it.
func (d *demo) keep(ctx context.Context) {
	flags := fmt.Sprintf("--etcd-endpoints=%s --cluster=%s", strings.Join(d.f.Endpoints(), ","), d.f.Cluster())
	cmd := d.opts.Binary
	if d.f.Net() != nil {
		cmd = fmt.Sprintf("ip netns exec %s %s", d.f.Net().Etcd().NS, d.opts.Binary)
		d.n.printf("\nThe lab keeps running. In another terminal, for example:\n")
		d.n.printf("  %s lab status\n", d.opts.Binary)
	} else {
		d.n.printf("\nThe lab keeps running. In another terminal, for example:\n")
	}
	d.n.printf("  %s status %s\n", cmd, flags)
	d.n.printf("  %s history %s\n", cmd, flags)
	d.n.printf("  kill -9 <agent pid>      # agents: %s\n", d.pids())
	d.n.printf("Agent logs: %s/nodes/<node>/agent.log\nPress Ctrl-C to stop.\n", d.f.Dir())
	<-ctx.Done()
}

func (d *demo) pids() string {
	var parts []string
	for _, name := range d.f.Nodes() {
		if pid := d.f.PID(name); pid != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", name, pid))
		}
	}
	return strings.Join(parts, " ")
}

// startWriter starts the client's writes to role-a (Netns mode: the role has storage).
func (d *demo) startWriter(ctx context.Context) error {
	if d.f.Net() == nil {
		return nil
	}
	w, err := d.f.StartWriter(ctx, "role-a", demoWriteEvery)
	if err != nil {
		return err
	}
	d.writer = w
	d.n.note("a client in %s writes to role-a every %s: POST /write?seq=N, acknowledged after fsync on the LUN",
		d.f.Net().Client().NS, demoWriteEvery)
	return nil
}

// checkWrites stops the client and reads role-a's write log back from its current
// holder: every acknowledged write must be there.
func (d *demo) checkWrites(ctx context.Context) error {
	if d.writer == nil {
		return nil
	}
	res := d.writer.Stop()
	d.writer = nil
	d.n.begin("Check the client's writes: read role-a's write log back (GET /writes)")
	wl, err := d.f.ReadWrites(ctx, "role-a")
	if err != nil {
		return err
	}
	lost := Lost(res.Acked, wl.Seqs)
	if len(lost) > 0 {
		return fmt.Errorf("lab: %d acknowledged writes lost on role-a, e.g. seq %d", len(lost), lost[0])
	}
	d.n.done("%d writes acknowledged, %d refused or timed out while role-a moved, %d lost: all %d are in writes.log on the LUN, read back from %s",
		len(res.Acked), res.Failed, len(lost), len(res.Acked), wl.Node)
	return nil
}

// wait is WaitFor bounded by the step timeout.
func (d *demo) wait(ctx context.Context, desc string, cond func(takeover.ClusterStatus) bool) (takeover.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.StepTimeout)
	defer cancel()
	return d.f.WaitFor(ctx, desc, cond)
}

// served is WaitServed bounded by the step timeout.
func (d *demo) served(ctx context.Context, role string, every time.Duration, ok func(Reply) bool) (Reply, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.StepTimeout)
	defer cancel()
	return d.f.WaitServed(ctx, role, every, ok)
}

// event waits for an event of the history (of role, "" = all) that matches.
func (d *demo) event(ctx context.Context, role string, match func(lease.Event) bool) (lease.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.StepTimeout)
	defer cancel()
	return d.f.WaitEvent(ctx, role, match)
}

// roleEvents keeps the events about roles (takeovers, releases, ...), for the timeline.
func roleEvents(evs []lease.Event) []lease.Event {
	var out []lease.Event
	for _, ev := range evs {
		if ev.Role != "" {
			out = append(out, ev)
		}
	}
	return out
}

// WaitEvent polls the history (of role, "" = all; newest 200 events) every 50 ms until an
// event matches, and returns it.
func (f *Farm) WaitEvent(ctx context.Context, role string, match func(lease.Event) bool) (lease.Event, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		evs, err := f.store.Events(ctx, role, 200)
		if err == nil {
			for i := len(evs) - 1; i >= 0; i-- {
				if match(evs[i]) {
					return evs[i], nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return lease.Event{}, fmt.Errorf("%w: event of role %q: %w", ErrWait, role, ctx.Err())
		case <-tick.C:
		}
	}
}
