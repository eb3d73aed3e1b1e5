package lab

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// benchRole is the role the benchmarks move around.
const benchRole = "role-a"

// serviceProbeInterval is how often the benchmarks probe a service while timing it.
const serviceProbeInterval = 10 * time.Millisecond

// BenchOptions configure BenchFailover and BenchMove.
type BenchOptions struct {
	// Binary is the `understudy` executable. Required.
	Binary string
	// Dir keeps the lab's files; it must be missing or empty. "" = a temporary
	// directory removed at the end.
	Dir string
	// Trials is the number of measured failovers or moves; default 10.
	Trials int
	// TTL of the agents' leases; default 1 s.
	TTL time.Duration
	// StepTimeout bounds each wait; default DefaultStepTimeout.
	StepTimeout time.Duration
	// Progress receives one line per trial; nil = quiet.
	Progress io.Writer
	// Log receives the lab's diagnostics; nil discards them.
	Log *zap.Logger
	// Mode is how BenchFailover fails the holder: ModeKill (default), ModeLinkDown or
	// ModeStop.
	Mode string
	// Loopback runs the farm on 127.0.0.1 without root (no storage, fencing or VIPs).
	Loopback bool
	// Detection of the roles: lease (default) or fast.
	Detection string
	// Keepalived also measures keepalived moving a VIP between two more node namespaces
	// of the same lab, at VRRPv2 advert_int 1 s and VRRPv3 advert_int 100 ms (Netns only).
	Keepalived bool
}

// Failover modes of BenchFailover.
const (
	// ModeKill: SIGKILL the holder's agent; its services die with it, its links stay up
	// (a crashed process: the VIP is still configured on the dead node).
	ModeKill = "kill"
	// ModeLinkDown: the holder's links go down with its agent still running (a cut
	// cable or dead switch port): the agent must demote itself, the standby fence it.
	ModeLinkDown = "linkdown"
	// ModeStop: SIGTERM the holder's agent: it releases its roles cleanly.
	ModeStop = "stop"
)

func (o *BenchOptions) defaults() error {
	switch o.Mode {
	case "":
		o.Mode = ModeKill
	case ModeKill, ModeStop:
	case ModeLinkDown:
		if o.Loopback {
			return fmt.Errorf("%w: Mode %s: needs the namespace lab (not Loopback)", ErrInvalidOption, o.Mode)
		}
	default:
		return fmt.Errorf("%w: Mode %q: want %s, %s or %s", ErrInvalidOption, o.Mode, ModeKill, ModeLinkDown, ModeStop)
	}
	if o.Keepalived && o.Loopback {
		return fmt.Errorf("%w: Keepalived: needs the namespace lab (not Loopback)", ErrInvalidOption)
	}
	if o.Trials == 0 {
		o.Trials = 10
	}
	if o.Trials < 1 {
		return fmt.Errorf("%w: Trials %d: want 1 or more", ErrInvalidOption, o.Trials)
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = DefaultStepTimeout
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// Stats summarise durations; JSON in nanoseconds.
type Stats struct {
	N   int           `json:"n"`
	Min time.Duration `json:"min_ns"`
	P50 time.Duration `json:"p50_ns"`
	P95 time.Duration `json:"p95_ns"`
	Max time.Duration `json:"max_ns"`
}

// Summarise computes nearest-rank percentiles of ds.
func Summarise(ds []time.Duration) Stats {
	if len(ds) == 0 {
		return Stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Stats{N: len(s), Min: s[0], P50: rank(0.50), P95: rank(0.95), Max: s[len(s)-1]}
}

// FailoverTrial is one measured failure of a role's holder.
type FailoverTrial struct {
	Trial    int    `json:"trial"`
	Role     string `json:"role"`
	Mode     string `json:"mode"`
	From     string `json:"from"`
	To       string `json:"to"`
	OldToken int64  `json:"old_token"`
	NewToken int64  `json:"new_token"`
	// FailToRunning: from the failure (the signal, or the links going down) until the
	// role's service first answered from the new holder (polled every 10 ms).
	FailToRunning time.Duration `json:"fail_to_running_ns"`
	// ClientGap: the longest time the polling client had no successful answer, what a
	// user of the role sees.
	ClientGap time.Duration `json:"client_gap_ns"`
	// DetectToRunning: the takeover event's Total, from the new holder noticing the
	// claim was gone (start of its "detect" step) until its resources ran.
	DetectToRunning time.Duration `json:"detect_to_running_ns"`
	Steps           []lease.Step  `json:"steps"`
}

// FailoverReport is the result of BenchFailover.
type FailoverReport struct {
	TTL             time.Duration   `json:"ttl_ns"`
	Mode            string          `json:"mode"`
	Detection       string          `json:"detection"`
	Namespaces      bool            `json:"namespaces"`
	Trials          []FailoverTrial `json:"trials"`
	FailToRunning   Stats           `json:"fail_to_running"`
	ClientGap       Stats           `json:"client_gap"`
	DetectToRunning Stats           `json:"detect_to_running"`
	// StepP50 is the median of each takeover step (detect, fence, storage, ...).
	StepP50 map[string]time.Duration `json:"step_p50_ns"`
	// Keepalived: the same client measurement of keepalived moving a VIP in the same
	// lab, at VRRPv2 1 s and VRRPv3 100 ms adverts (with BenchOptions.Keepalived).
	Keepalived []*KeepalivedReport `json:"keepalived,omitempty"`
}

// MoveTrial is one measured graceful `role move`.
type MoveTrial struct {
	Trial int    `json:"trial"`
	Role  string `json:"role"`
	From  string `json:"from"`
	To    string `json:"to"`
	// CommandToRunning: from starting `understudy role move` until the service answered
	// from the target (probed every 10 ms).
	CommandToRunning time.Duration `json:"command_to_running_ns"`
	// ClientGap: the longest time a client polling every 10 ms had no answer.
	ClientGap time.Duration `json:"client_gap_ns"`
}

// MoveReport is the result of BenchMove.
type MoveReport struct {
	TTL              time.Duration `json:"ttl_ns"`
	Trials           []MoveTrial   `json:"trials"`
	CommandToRunning Stats         `json:"command_to_running"`
	ClientGap        Stats         `json:"client_gap"`
}

// benchFarm starts the seed's start of day for a benchmark.
func benchFarm(ctx context.Context, opts BenchOptions) (*Farm, error) {
	f, err := NewFarm(ctx, Options{Binary: opts.Binary, Dir: opts.Dir, TTL: opts.TTL, Log: opts.Log, Netns: !opts.Loopback,
		Detection: opts.Detection})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 3*opts.StepTimeout)
	defer cancel()
	if err := f.StartOfDay(sctx); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// withBenchFarm runs bench on a farm at the seed's start of day and closes the farm
// afterwards; a close error is returned when bench itself succeeded.
func withBenchFarm(ctx context.Context, opts *BenchOptions, bench func(f *Farm) error) (err error) {
	if err := opts.defaults(); err != nil {
		return err
	}
	f, err := benchFarm(ctx, *opts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return bench(f)
}

// BenchMove moves role-a Trials times with `understudy role move` between its holder and
// the standby, on the seed's start of day, and measures command-to-running.
func BenchMove(ctx context.Context, opts BenchOptions) (*MoveReport, error) {
	var rep *MoveReport
	err := withBenchFarm(ctx, &opts, func(f *Farm) error {
		rep = &MoveReport{TTL: f.TTL()}
		var ds, gaps []time.Duration
		for i := 1; i <= opts.Trials; i++ {
			tr, err := moveTrial(ctx, f, opts.StepTimeout)
			if err != nil {
				return fmt.Errorf("lab: move trial %d: %w", i, err)
			}
			tr.Trial = i
			rep.Trials = append(rep.Trials, tr)
			ds, gaps = append(ds, tr.CommandToRunning), append(gaps, tr.ClientGap)
			_, _ = fmt.Fprintf(opts.Progress, "trial %2d: %s %s -> %s  client gap %s  command-to-running %s\n",
				i, tr.Role, tr.From, tr.To, lease.CompactDuration(tr.ClientGap), lease.CompactDuration(tr.CommandToRunning))
		}
		rep.CommandToRunning, rep.ClientGap = Summarise(ds), Summarise(gaps)
		return nil
	})
	return rep, err
}

func moveTrial(ctx context.Context, f *Farm, timeout time.Duration) (MoveTrial, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*timeout)
	defer cancel()
	tr := MoveTrial{Role: benchRole}
	cs, err := f.Status(ctx)
	if err != nil {
		return tr, err
	}
	tr.From = Holder(cs, benchRole)
	standbys := NodesIn(cs, takeover.StateStandby)
	if len(standbys) == 0 {
		return tr, fmt.Errorf("%w: a standby to move %s to", ErrWait, benchRole)
	}
	tr.To = standbys[0]
	p, err := f.pollRole(ctx, benchRole)
	if err != nil {
		return tr, err
	}
	start := time.Now()
	// The command may or may not wait for the handoff; probe while it runs either way.
	cliErr := make(chan error, 1)
	go func() {
		_, err := f.RoleMove(ctx, benchRole, tr.To)
		cliErr <- err
	}()
	_, at, err := f.WaitServed(ctx, benchRole, serviceProbeInterval, func(r Reply) bool { return r.Node == tr.To })
	if err == nil {
		err = Sleep(ctx, gapTail)
	}
	samples := p.Stop()
	if cerr := <-cliErr; cerr != nil {
		return tr, cerr
	}
	if err != nil {
		return tr, err
	}
	tr.CommandToRunning = at.Sub(start)
	tr.ClientGap, _, _ = LongestGap(samples, start, time.Now())
	_, err = f.WaitFor(ctx, tr.From+" standby after the move", func(cs takeover.ClusterStatus) bool {
		return IsStandby(cs, tr.From) && Holds(cs, tr.To, benchRole)
	})
	return tr, err
}
