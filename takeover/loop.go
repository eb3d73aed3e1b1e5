package takeover

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// errDemoted ends a session whose keepalive went stale while it held roles.
var errDemoted = errors.New("takeover: keepalive stale, demoted")

// errClaimVanished ends a session whose claim disappeared with its lease while the spec
// says keep-running (see checkHeld).
var errClaimVanished = errors.New("takeover: claim vanished with the lease (keep-running)")

// loop is one session's event loop. All its fields are touched only by the goroutine in run.
type loop struct {
	a       *Agent
	st      *lease.Store
	sess    *lease.Session
	started time.Time // when this session began (monotonic)

	state string
	since time.Time       // wall clock, display only
	done  map[string]bool // command ids handled in this session
}

func (l *loop) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // also ends the watch
	defer cancel()
	l.done = map[string]bool{}
	v, err := l.refresh(ctx)
	if err != nil {
		return err
	}
	watch := l.st.Watch(ctx, v.Rev+1)
	l.a.appendEvent(ctx, l.st, lease.Event{Node: l.a.cfg.Node, Kind: EventJoin,
		Detail: fmt.Sprintf("lease %x ttl %s", int64(l.sess.ID()), l.sess.TTL())})
	if err := l.reconcile(ctx, v); err != nil {
		return err
	}
	// The check tick drives demotion (stale keepalive) and a periodic re-read of the
	// cluster, so a missed watch event can delay a decision but never lose it.
	tick := time.NewTicker(checkInterval(l.sess.TTL()))
	defer tick.Stop()
	lastFull := time.Now()
	for {
		if l.mustDemote() {
			return errDemoted
		}
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-l.sess.Done():
			return lease.ErrSessionLost
		case <-tick.C:
			l.fastDetect(ctx)
			if time.Since(lastFull) < time.Second {
				l.a.touchLoop()
				continue
			}
			err = l.reconcileNow(ctx)
		case wr, ok := <-watch:
			if !ok || wr.Err() != nil || wr.Canceled {
				l.a.log.Warn("watch ended; re-reading the cluster", zap.Error(wr.Err()))
				v, err = l.refresh(ctx)
				if err == nil {
					watch = l.st.Watch(ctx, v.Rev+1)
					err = l.reconcile(ctx, v)
				}
				break
			}
			if onlyEvents(l.st.Prefix(), wr.Events) {
				continue // timeline entries change nothing an agent decides on
			}
			l.noteOrphans(wr.Events)
			err = l.reconcileNow(ctx)
		case f := <-l.a.roleEvent:
			l.a.roleFailed(ctx, l.st, f)
			err = l.reconcileNow(ctx)
		}
		lastFull = time.Now()
		if errors.Is(err, ErrRemoved) || errors.Is(err, errClaimVanished) {
			return err
		}
	}
}

// mustDemote: the node holds roles but can no longer prove its lease alive with margin.
func (l *loop) mustDemote() bool {
	if len(l.a.held) == 0 || l.a.keepaliveFresh(l.sess) || l.a.keepRunning() {
		return false
	}
	l.a.log.Warn("keepalive stale: demoting before the lease can expire",
		zap.Duration("keepalive_age", time.Since(l.sess.LastAck())), zap.Duration("ttl", l.sess.TTL()))
	return true
}

// checkInterval: often enough to demote within a small part of the TTL and to notice a
// silent fast-detection holder within a heartbeat interval or so.
func checkInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/20, 20*time.Millisecond), 50*time.Millisecond)
}

// onlyEvents reports whether a watch batch holds nothing but timeline entries, which
// every agent appends and none reads; re-reading the cluster for them would make every
// event cost a read by every node.
func onlyEvents(prefix string, evs []*clientv3.Event) bool {
	for _, ev := range evs {
		if !strings.HasPrefix(string(ev.Kv.Key), prefix+"events/") {
			return false
		}
	}
	return true
}

// noteClaims forgets when a role was orphaned once it has been claimed for two TTLs. A
// claim that vanishes sooner was a failed takeover: the role stays orphaned since it
// first was, so a failing preferred node's attempts do not restart, each time, the
// chance other nodes give it (mayClaim).
func (l *loop) noteClaims(v *lease.View) {
	now := time.Now()
	for role := range v.Claims {
		since, ok := l.a.claimedAt[role]
		if !ok {
			l.a.claimedAt[role], since = now, now
		}
		if now.Sub(since) >= 2*l.sess.TTL() {
			delete(l.a.orphaned, role)
		}
	}
	for role := range l.a.claimedAt {
		if _, ok := v.Claims[role]; !ok {
			delete(l.a.claimedAt, role)
		}
	}
}

// noteOrphans records when each claim vanished, so the takeover's "detect" step measures
// from the moment this node learned of it.
func (l *loop) noteOrphans(evs []*clientv3.Event) {
	for _, ev := range evs {
		if ev.Type != clientv3.EventTypeDelete {
			continue
		}
		if role, ok := claimRole(l.st.Prefix(), string(ev.Kv.Key)); ok {
			if _, seen := l.a.orphaned[role]; !seen {
				l.a.orphaned[role] = time.Now()
			}
		}
	}
}

func (l *loop) refresh(ctx context.Context) (*lease.View, error) {
	vctx, cancel := l.a.etcdCtx(ctx)
	defer cancel()
	v, err := l.st.View(vctx)
	l.a.setLocal(func(ls *LocalStatus) { ls.EtcdOK = err == nil })
	if err != nil {
		return nil, fmt.Errorf("takeover: read cluster: %w", err)
	}
	l.a.mu.Lock()
	if v.Spec == nil && v.SpecErr != nil && l.a.view != nil {
		// A spec this version cannot parse (say, newer fields during a rolling upgrade):
		// keep acting on the last good one rather than on "no roles".
		l.a.log.Warn("stored cluster spec does not parse; keeping the previous one", zap.Error(v.SpecErr))
		v.Spec, v.SpecRev = l.a.view.Spec, l.a.view.SpecRev
	}
	l.a.view = v
	l.a.mu.Unlock()
	return v, nil
}

func (l *loop) reconcileNow(ctx context.Context) error {
	v, err := l.refresh(ctx)
	if err != nil {
		l.a.log.Warn("reconcile skipped", zap.Error(err))
		return nil // not fatal: the session and demotion logic decide about outages
	}
	return l.reconcile(ctx, v)
}

// reconcile compares the cluster as etcd has it with what this node runs, and acts.
func (l *loop) reconcile(ctx context.Context, v *lease.View) error {
	defer l.a.touchLoop()
	l.carryOver(ctx, v)
	if err := l.checkHeld(ctx, v); err != nil {
		return err
	}
	if len(v.Commands[l.a.cfg.Node]) > 0 {
		if err := l.handleCommands(ctx, v); err != nil {
			return err
		}
		// A command may have released roles: decide the rest on what etcd has now, not
		// on claims this node just gave up.
		if nv, err := l.refresh(ctx); err == nil {
			v = nv
		}
	}
	l.dropUnspecified(ctx, v)
	if l.needsQualification(v) {
		l.publish(ctx, v) // visible as probation while the checks run
		l.qualify(ctx, v)
		if nv, err := l.refresh(ctx); err == nil {
			v = nv
		}
	}
	l.noteClaims(v)
	if v.Spec != nil {
		for _, r := range v.Spec.Roles {
			if _, held := v.Claims[r.Name]; !held {
				if _, seen := l.a.orphaned[r.Name]; !seen {
					l.a.orphaned[r.Name] = time.Now()
				}
			}
		}
	}
	l.retryReleases(ctx, v)
	l.adoptStranded(ctx, v)
	l.claimOrphans(ctx, v)
	l.failback(ctx, v)
	l.publish(ctx, v)
	l.updateHeartbeat(v)
	return nil
}

// carryOver moves the claims of roles this node kept running through an etcd outage
// (etcd_outage: keep-running) to the current session: rebinding keeps the token if the
// old claim still exists; if it expired and nobody took the role meanwhile (the last
// holder record still names this node and token) the role is claimed anew and adopted.
// Anything else is left to checkHeld, which stops the role: someone else has it.
func (l *loop) carryOver(ctx context.Context, v *lease.View) {
	a := l.a
	for role, h := range a.held {
		if h.claim.Lease == l.sess.ID() {
			continue
		}
		cctx, cancel := a.etcdCtx(ctx)
		c, ok := v.Claims[role]
		var err error
		switch {
		case ok && c.Node == a.cfg.Node && c.Token == h.claim.Token:
			c, err = l.st.Rebind(cctx, l.sess, h.claim)
		case !ok:
			var prev lease.LastHolder
			var won bool
			c, prev, won, err = l.st.TryClaim(cctx, l.sess, role, a.cfg.Node)
			switch {
			case err != nil:
			case !won:
				err = lease.ErrNotHolder
			case prev.Node != a.cfg.Node || prev.Token != h.claim.Token:
				// Someone held it in between: our copy is stale. Give the fresh claim
				// back; checkHeld stops the role and a normal takeover may follow.
				err = l.st.Release(cctx, c, nil, "")
				if err == nil {
					err = lease.ErrNotHolder
				}
			default:
				err = l.st.MarkHolder(cctx, c, a.id, vipMACs(h.spec)...)
			}
		default:
			err = lease.ErrNotHolder
		}
		cancel()
		if err != nil {
			a.log.Warn("could not carry a kept role over to the new session", zap.String("role", role), zap.Error(err))
			continue
		}
		a.log.Info("role carried over to the new session", zap.String("role", role),
			zap.Int64("token", c.Token), zap.Int64("old_token", h.claim.Token))
		h.claim = c
		v.Claims[role] = c
	}
}

// checkHeld stops roles whose claim is no longer ours: etcd is the source of truth, and a
// claim that vanished may already be someone else's.
//
// With etcd_outage keep-running, a claim of this session that vanished without being
// replaced went with the session's lease (expired or revoked in an etcd outage): that
// is the outage keep-running rides out, so the session ends (errClaimVanished) with the
// roles kept, and the next session carries them over if nobody held them meanwhile.
func (l *loop) checkHeld(ctx context.Context, v *lease.View) error {
	for role, h := range l.a.held {
		c, ok := v.Claims[role]
		if ok && c.Token == h.claim.Token && c.Node == l.a.cfg.Node {
			continue
		}
		if !ok && h.claim.Lease == l.sess.ID() && l.a.keepRunning() {
			l.a.log.Warn("claim vanished with this session's lease; keep-running: ending the session, the role stays up",
				zap.String("role", role), zap.Int64("token", h.claim.Token))
			return errClaimVanished
		}
		l.a.log.Warn("claim lost; stopping role", zap.String("role", role), zap.Int64("token", h.claim.Token))
		l.a.stopRole(ctx, l.st, role, EventLost, "claim no longer ours", "", false)
	}
	return nil
}

// dropUnspecified releases roles the applied spec no longer contains.
func (l *loop) dropUnspecified(ctx context.Context, v *lease.View) {
	for role := range l.a.held {
		if v.Spec != nil {
			if _, ok := v.Spec.Role(role); ok {
				continue
			}
		}
		l.a.stopRole(ctx, l.st, role, EventRelease, "role removed from spec", "", true)
	}
}

// publish writes the node record when it changed and refreshes the local status.
func (l *loop) publish(ctx context.Context, v *lease.View) {
	a := l.a
	roles := a.heldNames()
	state := deriveState(l.qualified(v), v.Cordoned[a.cfg.Node], a.draining, len(roles))
	if state != l.state {
		a.log.Info("state change", zap.String("from", l.state), zap.String("to", state),
			zap.Strings("roles", roles))
		l.state, l.since = state, time.Now()
		a.metrics.setState(state)
	}
	rec := lease.NodeRecord{Name: a.cfg.Node, ID: a.id, State: state, Roles: roles,
		Addresses: a.cfg.Addresses, Health: a.cfg.HealthListen, HealthTLS: a.cfg.HealthServesTLS(),
		Version: Version, Heartbeat: a.cfg.HeartbeatListen,
		Since: l.since, TTL: int64(l.sess.TTL() / time.Second), Lease: int64(l.sess.ID())}
	key := fmt.Sprintf("%s|%s|%v", state, strings.Join(roles, ","), l.since.UnixNano())
	if key != a.lastRec {
		pctx, cancel := a.etcdCtx(ctx)
		err := l.st.PutNode(pctx, l.sess, rec)
		cancel()
		if err != nil {
			a.log.Warn("publish node record", zap.Error(err))
		} else {
			a.lastRec = key
		}
	}
	a.syncLocalRoles()
	a.setLocal(func(ls *LocalStatus) { ls.State, ls.Ready = state, state != StateProbation })
}

// syncLocalRoles publishes the held roles to the health endpoint at once, so a load
// balancer stops sending traffic to a role the moment it is stopped here (not at the
// next publish, which a demotion may never reach).
func (a *Agent) syncLocalRoles() {
	tokens := make(map[string]int64, len(a.held))
	for r, h := range a.held {
		tokens[r] = h.claim.Token
	}
	a.setLocal(func(ls *LocalStatus) { ls.Roles = tokens })
}

func (a *Agent) heldNames() []string {
	names := make([]string, 0, len(a.held))
	for r := range a.held {
		names = append(names, r)
	}
	sort.Strings(names)
	return names
}

func (a *Agent) touchLoop() {
	a.mu.Lock()
	a.loopAt = time.Now()
	a.mu.Unlock()
}

// claimRole returns the role of a roles/<role>/claim key.
func claimRole(prefix, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, prefix+"roles/")
	if !ok {
		return "", false
	}
	role, ok := strings.CutSuffix(rest, "/claim")
	return role, ok && role != "" && !strings.Contains(role, "/")
}
