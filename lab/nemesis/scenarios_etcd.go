package nemesis

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

func runEtcdLeader(ctx context.Context, r *runner, c *Cycle, _ string) (expect, error) {
	leader, err := r.f.EtcdLeader(ctx)
	if err != nil {
		return expect{}, err
	}
	d := r.between(2*time.Second, 5*time.Second)
	flt := c.fault(fmt.Sprintf("kill -9 etcd leader %s for %s", leader, lease.CompactDuration(d)))
	if _, err := r.f.EtcdKill(leader); err != nil {
		return expect{}, err
	}
	serr := lab.Sleep(ctx, d)
	err = r.f.EtcdRestart(leader)
	flt.Healed = time.Now()
	if err == nil {
		err = r.waitEtcdWhole(ctx)
	}
	// A holder whose keepalive falls into the election (0.5-1 s with the lab's 500 ms
	// election timeout) may have to demote itself before its lease could lapse: that is
	// safe, and a standby then takes over, so the promise is the failover bound.
	ex := expect{bound: map[string]time.Duration{}, moves: map[string]int{}}
	for _, role := range r.roles {
		ex.bound[role], ex.moves[role] = r.failoverBound(), anyMoves
	}
	return ex, errors.Join(serr, err)
}

// waitEtcdWhole waits until every member answers and one of them leads.
func (r *runner) waitEtcdWhole(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	for {
		_, err := r.f.EtcdLeader(ctx)
		if err == nil {
			err = r.f.EtcdHealthy(ctx)
		}
		if err == nil {
			return nil
		}
		if serr := lab.Sleep(ctx, 200*time.Millisecond); serr != nil {
			return fmt.Errorf("nemesis: etcd whole again: %w (last: %w)", serr, err)
		}
	}
}

func runQuorumLoss(ctx context.Context, r *runner, c *Cycle, mode string) (expect, error) {
	if err := r.applySpec(ctx, func(doc map[string]any) { doc["etcd_outage"] = mode }); err != nil {
		return expect{}, err
	}
	// The agents read the spec from their watch; give them a moment to have it.
	if err := lab.Sleep(ctx, r.o.TTL); err != nil {
		return expect{}, err
	}
	names := r.f.EtcdMemberNames()
	r.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	stopped := names[:2]
	flt := c.fault(fmt.Sprintf("SIGSTOP etcd members %v for %s (quorum lost), etcd_outage %s", stopped, quorumOutage, mode))
	var errs []error
	for _, m := range stopped {
		if _, err := r.f.EtcdSignal(m, syscall.SIGSTOP); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, lab.Sleep(ctx, quorumOutage))
	for _, m := range stopped {
		if _, err := r.f.EtcdSignal(m, syscall.SIGCONT); err != nil {
			errs = append(errs, err)
		}
	}
	flt.Healed = time.Now()
	errs = append(errs, r.waitEtcdWhole(ctx))
	if mode != lease.OutageDemote {
		// Back to the default only once the actives have fresh sessions again: an agent
		// whose keepalive is still stale when it reads "demote" would rightly demote.
		_, err := r.waitFor(ctx, "every role held after the outage", func(cs takeover.ClusterStatus) bool {
			return len(cs.Unheld) == 0 && len(lab.NodesIn(cs, takeover.StateActive)) == len(r.roles)
		})
		errs = append(errs, err, lab.Sleep(ctx, 2*r.o.TTL),
			r.applySpec(ctx, func(doc map[string]any) { delete(doc, "etcd_outage") }))
	}
	if mode == lease.OutageKeepRunning {
		return expect{}, errors.Join(errs...)
	}
	ex := expect{bound: map[string]time.Duration{}, moves: map[string]int{}}
	for _, role := range r.roles {
		ex.bound[role], ex.moves[role] = quorumOutage+r.failoverBound(), anyMoves
	}
	return ex, errors.Join(errs...)
}
