package nemesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
)

// ErrInvalidOption: a bad option; the message names it and what is allowed.
var ErrInvalidOption = errors.New("nemesis: invalid option")

// Defaults and bounds of a run.
const (
	DefaultTTL = 2 * time.Second
	// takeoverBudget is what a takeover may take once the lease expired: fence, attach
	// the LUN, mount, start and check the service, add the VIP (about 0.5 s here), with
	// room for a machine busy with five race-enabled agents and three etcd members.
	takeoverBudget = 3 * time.Second
	// expiryCheck is etcd's lease expiry tick: a lease ends up to this long after its TTL.
	expiryCheck = 500 * time.Millisecond
	// settleTimeout bounds the wait for the cluster to settle after a fault is healed.
	settleTimeout = 90 * time.Second
	// gapMin is the shortest client gap counted as unavailability (the poller asks every
	// 20 ms; shorter gaps are scheduling noise).
	gapMin = 100 * time.Millisecond
)

// Options configure a run.
type Options struct {
	Binary   string        // the understudy executable the lab's nodes run; required
	Scenario string        // a scenario's name, or "all"
	Duration time.Duration // keep injecting until this much time passed; 0: every scenario once
	Seed     int64         // 0: chosen from the clock (printed either way)
	TTL      time.Duration // the agents' lease TTL; default 2 s
	Dir      string        // the lab's directory; empty: a new one, removed at the end
	Out      io.Writer     // progress, one line per step; nil discards
	Log      *zap.Logger
}

func (o *Options) defaults() error {
	if o.Binary == "" {
		return fmt.Errorf("%w: binary: the path of the understudy executable is required", ErrInvalidOption)
	}
	if o.Scenario != "all" && Find(o.Scenario) == nil {
		return fmt.Errorf("%w: scenario %q: want all or one of %s", ErrInvalidOption, o.Scenario, strings.Join(Names(), ", "))
	}
	if o.Duration < 0 {
		return fmt.Errorf("%w: duration %s: want 0 (each scenario once) or more", ErrInvalidOption, o.Duration)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano()%1_000_000 + 1
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return nil
}

// runner is one run: the farm, the clients, the random source and the report.
type runner struct {
	o       Options
	f       *lab.Farm
	rng     *rand.Rand
	rep     *Report
	roles   []string          // role-a, role-b, role-c
	nodes   []string          // a..e
	roleOf  map[string]string // VIP address or mountpoint -> role
	writers map[string]*lab.Writer
	pollers map[string]*lab.Poller
	tmp     string
	spec    []byte     // the spec last applied by the nemesis (nil: the lab's own)
	mu      sync.Mutex // guards out
}

// Run builds a lab, runs the scenarios with clients writing throughout, then judges the
// evidence. The report is returned even when an invariant failed (Report.OK); an error
// means the run itself could not be carried out.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	r := &runner{o: o, rng: rand.New(rand.NewPCG(uint64(o.Seed), 0x6e656d65736973)), roleOf: map[string]string{},
		writers: map[string]*lab.Writer{}, pollers: map[string]*lab.Poller{}, nodes: []string{"a", "b", "c", "d", "e"},
		rep: &Report{Seed: o.Seed, Scenario: o.Scenario, TTL: o.TTL, Started: time.Now(), Roles: map[string]*RoleEvidence{}}}
	r.say("nemesis: scenario %s, seed %d (replay: --seed %d), TTL %s", o.Scenario, o.Seed, o.Seed, o.TTL)
	var err error
	if r.tmp, err = os.MkdirTemp("", "usl-nemesis-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(r.tmp)
	if err := r.start(ctx); err != nil {
		return nil, errors.Join(err, r.close())
	}
	runErr := r.runScenarios(ctx)
	finalErr := r.finish(ctx)
	r.rep.Wall = time.Since(r.rep.Started)
	return r.rep, errors.Join(runErr, finalErr, r.close())
}

func (r *runner) say(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = fmt.Fprintf(r.o.Out, "%s +%-7s %s\n", time.Now().Format("15:04:05.000"),
		lease.CompactDuration(time.Since(r.rep.Started)), fmt.Sprintf(format, args...))
}

// start builds the farm (three etcd members, tgtd, nodes a-e, roles on a, b, c),
// starts a writer and a poller per role and waits until everything settled.
func (r *runner) start(ctx context.Context) error {
	r.say("building the lab: 3 etcd members (mTLS, auth on), tgtd, nodes a-e, roles role-a/b/c on a/b/c")
	f, err := lab.NewFarm(ctx, lab.Options{Binary: r.o.Binary, Netns: true, TTL: r.o.TTL, EtcdMembers: 3, Secure: true,
		Dir: r.o.Dir, LogFormat: "json", Log: r.o.Log})
	if err != nil {
		return err
	}
	r.f = f
	if err := f.StartOfDay(ctx); err != nil {
		return err
	}
	if err := f.StartNode(ctx, "e"); err != nil {
		return err
	}
	for _, name := range []string{"role-a", "role-b", "role-c"} {
		role, err := f.Role(name)
		if err != nil {
			return err
		}
		r.roles = append(r.roles, name)
		r.roleOf[role.VIP], r.roleOf[role.Mount] = name, name
		if r.writers[name], err = f.StartWriter(ctx, name, 50*time.Millisecond); err != nil {
			return err
		}
		if r.pollers[name], err = lab.StartPoller(ctx, lab.PollerOptions{URL: "http://" + role.Addr() + "/",
			Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, Dial: f.Net().DialContext(f.Net().Client().NS)}); err != nil {
			return err
		}
	}
	c := &Cycle{Scenario: "start", Start: time.Now()}
	r.settle(ctx, c)
	c.End = time.Now()
	if !c.Checks[0].OK {
		r.rep.Cycles = append(r.rep.Cycles, c)
		return fmt.Errorf("nemesis: the lab did not settle at start: %s", c.Checks[0].Detail)
	}
	r.say("lab settled: %s", c.Checks[0].Detail)
	return nil
}

// runScenarios runs the chosen scenario (each of its variants at least once) or every
// scenario once in a seeded order, then more cycles chosen by the seed until Duration.
func (r *runner) runScenarios(ctx context.Context) error {
	var pool []*Scenario
	if r.o.Scenario == "all" {
		pool = slices.Clone(Scenarios())
	} else {
		pool = []*Scenario{Find(r.o.Scenario)}
	}
	type job struct {
		sc      *Scenario
		variant string
	}
	// First pass: every scenario (in a seeded order) with each of its variants.
	var first []job
	for _, i := range r.rng.Perm(len(pool)) {
		for _, v := range pool[i].Variants() {
			first = append(first, job{pool[i], v})
		}
	}
	deadline := r.rep.Started.Add(r.o.Duration)
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var j job
		switch {
		case i < len(first):
			j = first[i]
		case time.Now().Before(deadline):
			j.sc = pool[r.rng.IntN(len(pool))]
			vs := j.sc.Variants()
			j.variant = vs[r.rng.IntN(len(vs))]
		default:
			return nil
		}
		c := r.runCycle(ctx, j.sc, j.variant)
		r.rep.Cycles = append(r.rep.Cycles, c)
		if !c.passed() {
			r.say("%s: an invariant failed; stopping the run", c.label())
			return nil
		}
	}
}

func (c *Cycle) passed() bool {
	for _, ch := range c.Checks {
		if !ch.OK {
			return false
		}
	}
	return true
}

func (r *runner) close() error {
	var errs []error
	for _, p := range r.pollers {
		p.Stop()
	}
	for _, w := range r.writers {
		w.Stop()
	}
	if r.f != nil {
		errs = append(errs, r.f.Close())
		r.f = nil
	}
	return errors.Join(errs...)
}
