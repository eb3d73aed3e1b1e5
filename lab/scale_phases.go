package lab

// The measured phases of a scale run (scale.go's runScale), in order: join, claim every
// role, steady window, the cost of a full view, and the failover trials.

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/understudy-ha/understudy/lease"
)

// join starts every agent at once, before any role exists (the quickstart's order:
// agents first, then `understudy apply`), and waits until every node record is in etcd.
func (f *scaleFarm) join(ctx context.Context, run *ScaleRun) error {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	before, err := f.e.snapshot(ctx)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for _, a := range f.agents {
		f.start(a)
	}
	var joined time.Time
	err = f.rec.wait(ctx, "every node joined", f.o.Progress, func(l *claimLog) bool {
		joined = latest(l.firstJoin)
		return len(l.firstJoin) == len(f.agents)
	})
	if err != nil {
		return err
	}
	after, err := f.e.snapshot(ctx)
	if err != nil {
		return err
	}
	run.Joined, run.Join = joined.Sub(t0), usage(before, after, f.e)
	_, _ = fmt.Fprintf(f.o.Progress, "join: %d nodes joined in %s\n", len(f.agents), lease.CompactDuration(run.Joined))
	return nil
}

// claimAll applies the spec (roles without resources, max_roles_per_node 1) to the
// joined farm and waits until every role is claimed and marked: every standby sees every
// role unheld at once.
func (f *scaleFarm) claimAll(ctx context.Context, run *ScaleRun) error {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	before, err := f.e.snapshot(ctx)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, _, err := f.st.PutSpec(ctx, scaleSpec(f.roles), 0, false); err != nil {
		return fmt.Errorf("lab: apply the scale spec: %w", err)
	}
	var claimed time.Time
	err = f.rec.wait(ctx, "every role claimed", f.o.Progress, func(l *claimLog) bool {
		claimed = latest(l.firstMark)
		return len(l.firstMark) == len(f.roles)
	})
	if err != nil {
		return err
	}
	after, err := f.e.snapshot(ctx)
	if err != nil {
		return err
	}
	run.Claimed, run.Claim = claimed.Sub(t0), usage(before, after, f.e)
	run.ClaimsPerSecond = float64(len(f.roles)) / run.Claimed.Seconds()
	_, races, _, _, _ := f.rec.counts()
	_, _ = fmt.Fprintf(f.o.Progress, "claim: %d roles claimed in %s (%.1f claims/s, %d lost races)\n",
		len(f.roles), lease.CompactDuration(run.Claimed), run.ClaimsPerSecond, races)
	return nil
}

func latest(m map[string]time.Time) time.Time {
	var t time.Time
	for _, v := range m {
		if v.After(t) {
			t = v
		}
	}
	return t
}

// steady measures the members over Window once the start of day settled: after a TTL
// the last node records are written and only keepalives remain.
func (f *scaleFarm) steady(ctx context.Context, run *ScaleRun) error {
	if err := Sleep(ctx, f.o.TTL); err != nil {
		return err
	}
	before, err := f.e.snapshot(ctx)
	if err != nil {
		return err
	}
	if err := Sleep(ctx, f.o.Window); err != nil {
		return err
	}
	after, err := f.e.snapshot(ctx)
	if err != nil {
		return err
	}
	run.Steady = usage(before, after, f.e)
	t := run.Steady.Traffic
	if t.Keepalives > 0 {
		run.BytesPerKeepalive = (t.ClientInBytes + t.ClientOutBytes) / t.Keepalives
	}
	if run.Leader, err = f.e.leader(ctx); err != nil {
		return err
	}
	_, _ = fmt.Fprintf(f.o.Progress, "steady %s: keepalives %.0f/s (expected %.0f/s), etcd CPU %.0f%%, agents CPU %.0f%%, machine busy %.0f%%\n",
		lease.CompactDuration(run.Steady.Duration), t.Keepalives, run.KeepalivesExpected, run.Steady.EtcdCPUPercent,
		run.Steady.AgentsCPUPercent, run.Steady.MachineBusyPercent)
	return nil
}

// viewCost times one lease.Store.View and sizes the prefix it reads.
func (f *scaleFarm) viewCost(ctx context.Context) (Cost, error) {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	start := time.Now()
	if _, err := f.st.View(ctx); err != nil {
		return Cost{}, err
	}
	c := Cost{Latency: time.Since(start)}
	resp, err := f.e.cli.Get(ctx, f.st.Prefix(), clientv3.WithPrefix())
	if err != nil {
		return c, fmt.Errorf("lab: read %s: %w", f.st.Prefix(), err)
	}
	for _, kv := range resp.Kvs {
		c.Keys, c.Bytes = c.Keys+1, c.Bytes+len(kv.Key)+len(kv.Value)
	}
	c.RealAgentBytesPerSecond = float64(len(f.agents)*c.Bytes) / fullViewInterval.Seconds()
	return c, nil
}

// trials crashes a role's holder Trials times, one role after the other.
func (f *scaleFarm) trials(ctx context.Context, run *ScaleRun) error {
	var claimed, marked []time.Duration
	for i := range f.o.Trials {
		tr, err := f.trial(ctx, f.roles[i%len(f.roles)])
		if err != nil {
			return fmt.Errorf("lab: failover trial %d: %w", i+1, err)
		}
		tr.Trial = i + 1
		run.Trials = append(run.Trials, tr)
		claimed, marked = append(claimed, tr.Failover), append(marked, tr.Marked)
		run.Failover, run.FailoverMarked = Summarise(claimed), Summarise(marked)
		_, _ = fmt.Fprintf(f.o.Progress, "trial %d: %s %s -> %s  failover %s (marked %s), token %d -> %d\n",
			tr.Trial, tr.Role, tr.From, tr.To, lease.CompactDuration(tr.Failover), lease.CompactDuration(tr.Marked), tr.OldToken, tr.NewToken)
	}
	return nil
}

// trial abandons the session of role's holder (no revoke: a crash), waits for another
// agent's claim, then starts the crashed node again as a standby, as `bench failover`
// restarts its killed node. The holder is taken from the claim log and must agree that
// it holds the role, so that a role already changing hands (a session lost under load)
// is never timed as if the crash had caused it.
func (f *scaleFarm) trial(ctx context.Context, role string) (ScaleTrial, error) {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	tr := ScaleTrial{Role: role}
	var cur scaleClaim
	var a *scaleAgent
	err := f.rec.wait(ctx, role+" held by an agent that knows it", nil, func(l *claimLog) bool {
		// Lock order: the claim log, then an agent (agents never nest the other way).
		cur, a = l.latest[role], f.byName[l.latest[role].Node]
		return a != nil && a.heldClaim().Token == cur.Token
	})
	if err != nil {
		return tr, err
	}
	joins := f.rec.joinCount(a.name)
	t0, held := a.crash()
	if held.Token != cur.Token {
		return tr, fmt.Errorf("%w: %s lost %s (token %d) just before its crash", ErrWait, a.name, role, cur.Token)
	}
	var next scaleClaim
	err = f.rec.wait(ctx, role+" claimed after the crash of "+a.name, nil, func(l *claimLog) bool {
		next = l.latest[role]
		return next.Token > cur.Token
	})
	if err != nil {
		return tr, err
	}
	tr.From, tr.To, tr.OldToken, tr.NewToken = cur.Node, next.Node, cur.Token, next.Token
	tr.Failover, tr.Marked = next.ClaimedAt.Sub(t0), next.MarkedAt.Sub(t0)
	f.start(a)
	err = f.rec.wait(ctx, a.name+" back as a standby", nil, func(l *claimLog) bool { return l.joins[a.name] > joins })
	return tr, err
}
