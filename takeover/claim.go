package takeover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// claimOrphans tries to claim unheld roles while this node has capacity. Claims are
// non-blocking transactions, so free standbys each end up with a different orphaned role
// when several fail at once.
func (l *loop) claimOrphans(ctx context.Context, v *lease.View) {
	a := l.a
	if v.Spec == nil || a.draining || v.Cordoned[a.cfg.Node] || !a.keepaliveFresh(l.sess) {
		return
	}
	for _, r := range l.candidateOrder(v) {
		if len(a.held) >= v.Spec.MaxRolesPerNode {
			return
		}
		if _, held := v.Claims[r.Name]; held {
			continue
		}
		if f := v.Fencing[r.Name]; f != "" && f != a.cfg.Node {
			continue // another standby fenced the holder early and is claiming it
		}
		if until, ok := a.backoff[r.Name]; ok && time.Now().Before(until) {
			continue
		}
		if !l.qualifiedFor(v, r.Name) || !l.mayClaim(v, r) {
			continue
		}
		cctx, cancel := a.etcdCtx(ctx)
		c, prev, ok, err := l.st.TryClaim(cctx, l.sess, r.Name, a.cfg.Node)
		cancel()
		if err != nil {
			a.log.Warn("claim", zap.String("role", r.Name), zap.Error(err))
			continue
		}
		if !ok {
			continue // another standby won the race
		}
		a.acquire(ctx, l.st, l.sess, r, c, prev)
	}
}

// adoptStranded handles claims under this session's lease for roles this node does not
// run: a TryClaim that etcd committed but whose answer never arrived (a timeout). Left
// alone, such a role would stay unserved until this node's lease ended, and the node
// would hold more claims than max_roles_per_node allows. With room, the role is taken
// over (TryClaim reports this session's own claim as won, with the previous holder to
// fence); without, the claim is given back.
func (l *loop) adoptStranded(ctx context.Context, v *lease.View) {
	a := l.a
	for role, c := range v.Claims {
		if _, giving := a.releasing[role]; giving {
			continue // stopped here on purpose; retryReleases gives it back
		}
		if c.Node != a.cfg.Node || c.Lease != l.sess.ID() || a.held[role] != nil {
			continue
		}
		var r *lease.RoleSpec
		ok := v.Spec != nil
		if ok {
			r, ok = v.Spec.Role(role)
		}
		room := ok && !a.draining && !v.Cordoned[a.cfg.Node] && len(a.held) < v.Spec.MaxRolesPerNode && a.keepaliveFresh(l.sess)
		cctx, cancel := a.etcdCtx(ctx)
		if !room {
			err := l.st.Release(cctx, c, nil, "")
			cancel()
			if !errors.Is(err, lease.ErrNotHolder) { // not ours any more: the view was stale
				a.log.Warn("gave back a claim this node cannot run", zap.String("role", role), zap.Int64("token", c.Token), zap.Error(err))
			}
			continue
		}
		// Adopt, not TryClaim: the view may predate a release this very reconcile made
		// (a move), and TryClaim would then claim the role afresh, ignoring its target.
		prev, err := l.st.Adopt(cctx, l.sess, c)
		cancel()
		if err != nil {
			continue
		}
		a.log.Warn("found our own claim without its takeover (an answer lost to a timeout); taking over",
			zap.String("role", role), zap.Int64("token", c.Token))
		a.acquire(ctx, l.st, l.sess, *r, c, prev)
	}
}

// pendingRelease is the release of a role this node stopped that etcd did not confirm.
type pendingRelease struct {
	claim  lease.Claim
	last   *lease.LastHolder
	target string
}

// retryReleases gives back the claims of roles this node stopped but could not release
// (a move, a drain or a failed role whose release timed out). Without it the claim
// would stay bound to this live session with nothing running, and look stranded.
func (l *loop) retryReleases(ctx context.Context, v *lease.View) {
	a := l.a
	for role, p := range a.releasing {
		if c, ok := v.Claims[role]; !ok || c.Token != p.claim.Token || c.Node != p.claim.Node {
			delete(a.releasing, role) // gone or replaced: nothing left to give back
			continue
		}
		cctx, cancel := a.etcdCtx(ctx)
		err := l.st.Release(cctx, p.claim, p.last, p.target)
		cancel()
		if err != nil && !errors.Is(err, lease.ErrNotHolder) {
			a.log.Warn("release claim (retry)", zap.String("role", role), zap.Error(err))
			continue
		}
		a.log.Info("claim released on retry", zap.String("role", role), zap.Int64("token", p.claim.Token))
		delete(a.releasing, role)
	}
}

// candidateOrder lists roles this node prefers first, then the others rotated by node id,
// so concurrent standbys start their attempts on different roles.
func (l *loop) candidateOrder(v *lease.View) []lease.RoleSpec {
	var mine, rest []lease.RoleSpec
	for _, r := range v.Spec.Roles {
		if slices.Contains(r.Preferred, l.a.cfg.Node) {
			mine = append(mine, r)
		} else {
			rest = append(rest, r)
		}
	}
	if n := len(rest); n > 1 {
		k := int(l.a.id) % n
		rest = append(rest[k:], rest[:k]...)
	}
	return append(mine, rest...)
}

// mayClaim applies placement: a role being handed to a named node (move, failback) or
// with preferred nodes is left to a live, free such node for two TTLs (at start of day,
// to the preferred nodes for startGrace TTLs even before they join), so roles land where
// the operator asked without ever staying unheld because that node cannot take them.
func (l *loop) mayClaim(v *lease.View, r lease.RoleSpec) bool {
	me := l.a.cfg.Node
	var waited time.Duration
	if since, ok := l.a.orphaned[r.Name]; ok {
		waited = time.Since(since)
	}
	chance := 2 * l.sess.TTL() // how long a named or preferred node gets to take the role
	switch t := v.Targets[r.Name]; {
	case t == me:
		return true // handed to this node: it wins over preferences
	case t != "" && nodeFree(v, t) && waited < chance:
		return false
	}
	if l.leaveToKeeper(v, r.Name, chance) {
		return false
	}
	if len(r.Preferred) == 0 || slices.Contains(r.Preferred, me) {
		return true
	}
	freePreferred := slices.ContainsFunc(r.Preferred, func(p string) bool { return nodeFree(v, p) })
	switch {
	case waited > startGrace*l.sess.TTL():
		return true
	case freePreferred:
		return waited > chance // it had its chance and did not take the role
	default:
		// Start of day (never held): give preferred nodes that boot at the same time a
		// chance to join before a non-preferred node takes their role.
		_, everHeld := v.Last[r.Name]
		return everHeld
	}
}

// leaveToKeeper: with etcd_outage keep-running, actives keep their roles through an
// etcd outage and carry them over to new sessions when etcd is back, but their old
// claims may be gone by then (a leader that was frozen along with the quorum revokes
// every overdue lease the moment it resumes, with no election to extend them). A node
// whose own session is that young (it lived through the outage too) therefore leaves a
// role whose last holder did not give it up cleanly to that holder for `chance`; a
// node with an older session takes it at once (the holder really failed).
func (l *loop) leaveToKeeper(v *lease.View, role string, chance time.Duration) bool {
	if v.Spec == nil || v.Spec.EtcdOutage != lease.OutageKeepRunning || time.Since(l.started) >= chance {
		return false
	}
	last, ok := v.Last[role]
	return ok && !last.Clean && last.Node != l.a.cfg.Node
}

// failback hands roles held here back to a free preferred standby, when the spec asks
// for failback. The handoff is graceful (clean release naming the target), like a move.
func (l *loop) failback(ctx context.Context, v *lease.View) {
	a := l.a
	if v.Spec == nil || !v.Spec.Failback {
		return
	}
	for _, role := range a.heldNames() {
		r, ok := v.Spec.Role(role)
		if !ok || len(r.Preferred) == 0 || slices.Contains(r.Preferred, a.cfg.Node) {
			continue
		}
		for _, p := range r.Preferred {
			if nodeFree(v, p) && v.Nodes[p].State == StateStandby && passedRole(v.Qualified[p], role) {
				a.stopRole(ctx, l.st, role, EventRelease, "failback to "+p, p, true)
				break
			}
		}
	}
}

// startGrace, in TTLs, is how long a never-held role waits for a preferred node before
// any node may take it.
const startGrace = 5

// nodeFree reports whether a node is live, in failover, and has room for another role.
func nodeFree(v *lease.View, node string) bool {
	rec, ok := v.Nodes[node]
	if !ok || v.Cordoned[node] {
		return false
	}
	if rec.State != StateStandby && rec.State != StateActive {
		return false
	}
	return v.Spec != nil && len(rec.Roles) < v.Spec.MaxRolesPerNode
}

// acquire runs the takeover of a role this node just claimed: fence the last holder,
// record ourselves as holder, start the resources in order. Any failure rolls back and
// releases the claim so another standby can try.
func (a *Agent) acquire(ctx context.Context, st *lease.Store, sess *lease.Session, r lease.RoleSpec, c lease.Claim, prev lease.LastHolder) {
	start := time.Now()
	log := a.log.With(zap.String("role", r.Name), zap.Int64("token", c.Token), zap.String("from", prev.Node))
	// The takeover must stop the moment the lease is lost: someone else may be starting.
	tctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-sess.Done():
			cancel()
		case <-tctx.Done():
		}
	}()

	var steps []lease.Step
	first := start
	if seen, ok := a.orphaned[r.Name]; ok {
		first = seen
		if pre, ok := a.fast.preSteps[r.Name]; ok { // fenced early: detect, probe, fence, revoke
			steps = append(steps, pre...)
			delete(a.fast.preSteps, r.Name)
		} else {
			steps = append(steps, lease.Step{Name: "detect", Duration: start.Sub(seen)})
		}
		a.metrics.claimLatency.Observe(start.Sub(seen).Seconds())
	}
	defer delete(a.fast.preFenced, r.Name)
	ev := lease.Event{Role: r.Name, Node: a.cfg.Node, Token: c.Token, From: prev.Node}

	fenceStep, fenced, err := a.fenceLast(tctx, r, prev)
	steps = append(steps, fenceStep)
	if err == nil {
		err = timed(&steps, "mark", func() error { return st.MarkHolder(tctx, c, a.id, vipMACs(r)...) })
	}
	var h *heldRole
	if err == nil {
		h, err = a.startRole(tctx, r, c, fenced, &steps)
	}
	ev.Steps, ev.Total = steps, time.Since(first)
	if err != nil {
		a.takeoverFailed(ctx, st, log, r.Name, c, ev, err)
		return
	}
	// Metrics first: whoever sees the role in the local status (health endpoint, tests)
	// then also sees it counted.
	a.metrics.roleHeld.WithLabelValues(r.Name).Set(1)
	a.metrics.transitions.WithLabelValues(r.Name, EventTakeover).Inc()
	for _, s := range steps {
		a.metrics.stepDuration.WithLabelValues(s.Name).Observe(s.Duration.Seconds())
	}
	if prev.Node != "" && steps[0].Name == "detect" { // a failover this node saw begin, not a first start
		a.metrics.failover.Observe(ev.Total.Seconds())
	}
	a.held[r.Name] = h
	a.syncLocalRoles()
	delete(a.orphaned, r.Name)
	a.failures.success(r.Name)
	ev.Kind = EventTakeover
	a.appendEvent(ctx, st, ev)
	log.Info("role taken over", zap.Duration("duration", ev.Total), zap.Any("steps", steps))
}

// takeoverFailed releases the claim after a failed takeover. The last-holder record stays
// unclean, so whoever tries next fences whatever this attempt may have touched.
func (a *Agent) takeoverFailed(ctx context.Context, st *lease.Store, log *zap.Logger, role string, c lease.Claim, ev lease.Event, err error) {
	now := time.Now()
	n := a.failures.countRole(role, now)
	a.backoff[role] = now.Add(roleBackoff(a.cfg.TTL, n))
	ev.Kind, ev.Detail = EventTakeoverFailed, err.Error()
	log.Error("takeover failed; releasing the claim", zap.Error(err), zap.Any("steps", ev.Steps),
		zap.Int("failures", n))
	rctx, cancel := a.etcdCtx(context.WithoutCancel(ctx))
	defer cancel()
	if rerr := st.Release(rctx, c, nil, ""); rerr != nil {
		log.Warn("release after failed takeover", zap.Error(rerr))
	}
	a.appendEvent(rctx, st, ev)
	a.metrics.transitions.WithLabelValues(role, EventTakeoverFailed).Inc()
	if streak := a.failures.countTakeover(now); streak >= maxFailStreak {
		a.cordonSelf(rctx, st, fmt.Sprintf("%d takeovers failed in a row; last: %v", streak, err))
	}
}

// maxFailStreak is how many takeovers in a row may fail on this node before it cordons
// itself, so a node that cannot run roles (bad disk path, broken binary) stops taking
// them one after another. The operator uncordons it after fixing the cause.
const maxFailStreak = 3

func (a *Agent) cordonSelf(ctx context.Context, st *lease.Store, why string) {
	a.log.Error("cordoning this node", zap.String("reason", why))
	if err := st.SetCordoned(ctx, a.cfg.Node, true); err != nil {
		a.log.Warn("cordon self", zap.Error(err))
		return
	}
	a.failures.streak = 0
	a.appendEvent(ctx, st, lease.Event{Node: a.cfg.Node, Kind: EventCordon, Detail: why})
}

// timed runs f as a named step and appends its duration (and error) to steps.
func timed(steps *[]lease.Step, name string, f func() error) error {
	t := time.Now()
	err := f()
	s := lease.Step{Name: name, Duration: time.Since(t)}
	if err != nil {
		s.Err = err.Error()
	}
	*steps = append(*steps, s)
	return err
}

func (a *Agent) appendEvent(ctx context.Context, st *lease.Store, ev lease.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ectx, cancel := a.etcdCtx(context.WithoutCancel(ctx))
	defer cancel()
	if err := st.AppendEvent(ectx, ev); err != nil {
		a.log.Warn("append event", zap.String("kind", ev.Kind), zap.Error(err))
	}
}
