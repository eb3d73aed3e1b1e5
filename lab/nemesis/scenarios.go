package nemesis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
)

// Scenario is one nemesis: a fault, what understudy promises under it, and how to
// inject and heal it once (a cycle).
type Scenario struct {
	Name    string
	Fault   string // what the nemesis does
	Promise string // what the product promises meanwhile
	// variants run as separate cycles (e.g. the step that fails); none: one.
	variants []string
	run      func(ctx context.Context, r *runner, c *Cycle, variant string) (expect, error)
}

// Variants are the scenario's variants ("" when it has none).
func (s *Scenario) Variants() []string {
	if len(s.variants) == 0 {
		return []string{""}
	}
	return s.variants
}

// quorumOutage is how long the quorum scenarios keep two of three etcd members stopped.
const quorumOutage = 30 * time.Second

var scenarios = []*Scenario{
	{Name: "kill", run: runKill,
		Fault:   "kill -9 a holder's agent and its service; the agent is restarted (as systemd would) once the role moved",
		Promise: "a standby fences the node and serves the role within TTL + takeover budget; the restarted agent removes the VIP and LUN device it left and stands by"},
	{Name: "pause", run: runPause,
		Fault:   "SIGSTOP a holder's agent for TTL + 0.5-1.5 s, then SIGCONT",
		Promise: "a standby fences it and takes over; the resumed agent finds its lease gone, stops its service and VIP without a write reaching the LUN (the target rejects them), and stands by"},
	{Name: "partition-etcd", run: runPartitionEtcd,
		Fault:   "drop, with nftables in a holder's namespace, all traffic between it and the etcd members; clients still reach it",
		Promise: "the holder stops its role before its lease can expire (self-demotion), a standby takes over; after healing the node stands by"},
	{Name: "partition-clients", run: runPartitionClients,
		Fault:   "drop, with nftables in a holder's namespace, its client network for 3-5 s; etcd and the SAN still reach it",
		Promise: "no failover (understudy watches liveness through etcd, not client reachability); the role is back when the network is"},
	{Name: "etcd-leader", run: runEtcdLeader,
		Fault: "kill -9 the etcd leader, restart it 2-5 s later",
		Promise: "etcd elects a new leader; most holders ride it out, and one whose keepalive falls into the election demotes itself " +
			"before its lease could lapse (safe), its role served again within TTL + takeover budget"},
	{Name: "quorum-loss", run: runQuorumLoss, variants: []string{"keep-running", "demote"},
		Fault: "SIGSTOP two of the three etcd members for 30 s (etcd_outage: keep-running, then demote)",
		Promise: "keep-running (SCSI fencing on every role): every active keeps serving, nothing moves; " +
			"demote: actives stop their roles before their leases could expire, and the roles are served again within TTL + takeover budget of etcd's return"},
	{Name: "two-roles", run: runTwoRoles,
		Fault:   "crash (links down, kill -9) two holders at once; two standbys",
		Promise: "each standby takes one role, both within TTL + takeover budget"},
	{Name: "takeover-fail", run: runTakeoverFail, variants: []string{"mount", "exec", "vip"},
		Fault: "crash a holder while its preferred standby cannot take the role: its mount fails (a file where the mountpoint is), " +
			"or its executable exits at once (/bin/false bound over it), or a foreign host answers the VIP",
		Promise: "the failing standby rolls back (no mount, process or VIP left) and the next standby takes the role; " +
			"with a foreign host on the VIP nobody adds it until that host is gone, and the role is served when the first standby's retry backoff ends"},
	{Name: "restart", run: runRestart,
		Fault:   "kill -9 a holder's agent (its service dies with it) and start it again at once: its VIP and LUN device are still there",
		Promise: "the agent cleans up what it left before it joins; the role is served again within TTL + takeover budget"},
	{Name: "flap", run: runFlap,
		Fault:   "crash a holder, then bring it back and crash it again, three times",
		Promise: "the role moves once and stays (no ping-pong); the flapping node only ever stands by"},
}

// Scenarios lists every scenario, in the documented order.
func Scenarios() []*Scenario { return slices.Clone(scenarios) }

// Find returns the scenario of that name, or nil.
func Find(name string) *Scenario {
	for _, s := range scenarios {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Names lists the scenarios' names.
func Names() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.Name)
	}
	return names
}

func failover(r *runner, roles ...string) expect {
	ex := expect{bound: map[string]time.Duration{}, moves: map[string]int{}}
	for _, role := range roles {
		ex.bound[role], ex.moves[role] = r.failoverBound(), 1
	}
	return ex
}

func runKill(ctx context.Context, r *runner, c *Cycle, _ string) (expect, error) {
	role, h, tok, err := r.pickHeld(ctx)
	if err != nil {
		return expect{}, err
	}
	rep, err := r.f.Probe(ctx, role)
	if err != nil {
		return expect{}, err
	}
	flt := c.fault(fmt.Sprintf("kill -9 node %s's agent (pid %d) and %s's service (pid %d)", h, r.f.PID(h), role, rep.PID))
	if err := syscall.Kill(rep.PID, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return expect{}, fmt.Errorf("kill service pid %d: %w", rep.PID, err)
	}
	if _, err := r.f.Kill(h); err != nil {
		return expect{}, err
	}
	if _, err := r.waitTakeover(ctx, role, tok); err != nil {
		return expect{}, err
	}
	if err := r.f.StartNode(ctx, h); err != nil {
		return expect{}, err
	}
	flt.Healed = time.Now()
	return failover(r, role), nil
}

func runPause(ctx context.Context, r *runner, c *Cycle, _ string) (expect, error) {
	role, h, tok, err := r.pickHeld(ctx)
	if err != nil {
		return expect{}, err
	}
	d := r.o.TTL + r.between(500*time.Millisecond, 1500*time.Millisecond)
	flt := c.fault(fmt.Sprintf("SIGSTOP node %s's agent for %s (holds %s)", h, lease.CompactDuration(d), role))
	if _, err := r.f.Signal(h, syscall.SIGSTOP); err != nil {
		return expect{}, err
	}
	resume := func() error {
		_, err := r.f.Signal(h, syscall.SIGCONT)
		flt.Healed = time.Now()
		return err
	}
	if err := lab.Sleep(ctx, d); err != nil {
		return expect{}, errors.Join(err, resume())
	}
	if _, err := r.waitTakeover(ctx, role, tok); err != nil {
		return expect{}, errors.Join(err, resume())
	}
	return failover(r, role), resume()
}

func runPartitionEtcd(ctx context.Context, r *runner, c *Cycle, _ string) (expect, error) {
	role, h, tok, err := r.pickHeld(ctx)
	if err != nil {
		return expect{}, err
	}
	addrs, err := r.etcdAddrs()
	if err != nil {
		return expect{}, err
	}
	flt := c.fault(fmt.Sprintf("partition node %s (holds %s) from etcd %v", h, role, addrs))
	if err := r.f.Net().Partition(ctx, h, nil, addrs); err != nil {
		return expect{}, err
	}
	_, werr := r.waitTakeover(ctx, role, tok)
	if werr == nil {
		werr = lab.Sleep(ctx, r.between(0, 2*time.Second))
	}
	err = r.f.Net().Heal(context.WithoutCancel(ctx), h)
	flt.Healed = time.Now()
	return failover(r, role), errors.Join(werr, err)
}

func runPartitionClients(ctx context.Context, r *runner, c *Cycle, _ string) (expect, error) {
	role, h, _, err := r.pickHeld(ctx)
	if err != nil {
		return expect{}, err
	}
	d := r.between(3*time.Second, 5*time.Second)
	flt := c.fault(fmt.Sprintf("partition node %s (holds %s) from the client network for %s", h, role, lease.CompactDuration(d)))
	if err := r.f.Net().Partition(ctx, h, []string{lab.NetClient}, nil); err != nil {
		return expect{}, err
	}
	serr := lab.Sleep(ctx, d)
	err = r.f.Net().Heal(context.WithoutCancel(ctx), h)
	flt.Healed = time.Now()
	return expect{bound: map[string]time.Duration{role: d + time.Second}}, errors.Join(serr, err)
}
