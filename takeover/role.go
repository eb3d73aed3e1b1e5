package takeover

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// heldRole is a role this node holds: its claim, its running resources, and the
// goroutines that forward its resources' "gave up" reports to the loop.
type heldRole struct {
	claim    lease.Claim
	spec     lease.RoleSpec
	chain    *Chain
	rc       RoleContext
	since    time.Time
	restarts []time.Time        // local restarts after failed health checks
	stop     context.CancelFunc // stops the watcher goroutines
	wg       sync.WaitGroup
}

// roleFailure is a held role's resource giving up: the exec's restarts exhausted, the
// health check failing, or the fence watchdog finding this node fenced.
type roleFailure struct {
	held   *heldRole
	source string // resource name: exec, health, fence
	err    error
}

// chainBuilder makes a role's resources from its spec, and the channels, by resource
// name, on which resources report that they gave up (exec restarts exhausted, health
// failing).
type chainBuilder func(r lease.RoleSpec) (*Chain, map[string]<-chan error, error)

// buildChain is the production chainBuilder: the role's resources in takeover order
// (storage, exec, vip, health); fencing runs before the chain and is not undone.
func (a *Agent) buildChain(r lease.RoleSpec) (*Chain, map[string]<-chan error, error) {
	log := a.log.With(zap.String("role", r.Name))
	if _, err := a.fencerFor(r); err != nil {
		return nil, nil, err
	}
	var res []Resource
	failed := map[string]<-chan error{}
	switch {
	case r.Storage != nil && strings.HasPrefix(r.Storage.Device, "iscsi://"):
		res = append(res, newLUNStorage(a.san, *r.Storage, a.cfg.StateDir, r.Name, log))
	case r.Storage != nil:
		s, err := NewStorage(*r.Storage, log)
		if err != nil {
			return nil, nil, err
		}
		res = append(res, s)
	}
	if r.Exec != nil {
		e := NewExec(*r.Exec, log)
		res, failed["exec"] = append(res, e), e.Failed()
	}
	if r.VIP != nil {
		v, err := NewVIP(*r.VIP, log)
		if err != nil {
			return nil, nil, err
		}
		if r.VIP.TestAddress != "" {
			if v.TestAddress, err = netip.ParsePrefix(r.VIP.TestAddress); err != nil {
				return nil, nil, fmt.Errorf("vip.test_address: %w", err)
			}
		}
		res = append(res, v)
	}
	if r.Health != nil {
		h, err := NewHealthCheck(*r.Health, log)
		if err != nil {
			return nil, nil, err
		}
		res, failed["health"] = append(res, h), h.Failed()
	}
	return NewChain(res...), failed, nil
}

// fenceLast registers this node on the role's storage and fences the previous holder,
// unless it released cleanly (or there was none, or it was this node's own earlier life,
// whose processes and mounts the agent cleaned up before it joined). A fence that fails
// stops the takeover. It returns the fenced holder's MACs (see lease.LastHolder.MACs)
// when a real fence ran, for the vip resource.
func (a *Agent) fenceLast(ctx context.Context, r lease.RoleSpec, prev lease.LastHolder) (lease.Step, []net.HardwareAddr, error) {
	t := time.Now()
	step := lease.Step{Name: "fence"}
	a.metrics.fenceFailed.WithLabelValues(r.Name) // the series exists (at 0) once a takeover was tried
	f, err := a.fencerFor(r)
	if err == nil {
		err = f.Join(ctx)
	}
	var fenced []net.HardwareAddr
	if err == nil && prev.Node != "" && !prev.Clean && prev.Node != a.cfg.Node {
		if tok, ok := a.fast.preFenced[r.Name]; ok && tok == prev.Token {
			step.Name = "join" // fenced and verified moments ago by fastTakeover
		} else {
			err = f.Fence(ctx, prev)
		}
		if _, none := f.(noFence); err == nil && !none {
			fenced = parseMACs(prev.MACs)
		}
	}
	step.Duration = time.Since(t)
	if err != nil {
		err = fmt.Errorf("takeover: fence %s for role %q: %w", prev.Node, r.Name, err)
		step.Err = err.Error()
		a.metrics.fenceFailed.WithLabelValues(r.Name).Inc()
	}
	return step, fenced, err
}

// vipMACs is what this node records as holder of r: the MAC of r's VIP interface.
func vipMACs(r lease.RoleSpec) []string {
	if r.VIP == nil || r.VIP.Interface == "" {
		return nil
	}
	ifc, err := net.InterfaceByName(r.VIP.Interface)
	if err != nil || len(ifc.HardwareAddr) == 0 {
		return nil
	}
	return []string{ifc.HardwareAddr.String()}
}

// parseMACs parses what vipMACs recorded, skipping anything malformed.
func parseMACs(ss []string) []net.HardwareAddr {
	var macs []net.HardwareAddr
	for _, s := range ss {
		if m, err := net.ParseMAC(s); err == nil {
			macs = append(macs, m)
		}
	}
	return macs
}

// startRole builds and starts the role's resources and watches the exec resource.
func (a *Agent) startRole(ctx context.Context, r lease.RoleSpec, c lease.Claim, fenced []net.HardwareAddr, steps *[]lease.Step) (*heldRole, error) {
	chain, failed, err := a.build(r)
	if err != nil {
		return nil, fmt.Errorf("takeover: role %q: %w", r.Name, err)
	}
	rc := RoleContext{Role: r.Name, Node: a.cfg.Node, NodeID: a.id, Token: c.Token,
		Log: a.log.With(zap.String("role", r.Name), zap.Int64("token", c.Token)), FencedMACs: fenced}
	started, err := chain.Start(ctx, rc)
	*steps = append(*steps, started...)
	if err != nil {
		return nil, err
	}
	h := &heldRole{claim: c, spec: r, chain: chain, rc: rc, since: time.Now()}
	wctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	report := func(source string, err error) {
		select {
		case a.roleEvent <- roleFailure{held: h, source: source, err: err}:
		case <-wctx.Done():
		}
	}
	for source, ch := range failed { // resources that give up; these channels never close
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for {
				select {
				case err := <-ch:
					report(source, err)
				case <-wctx.Done():
					return
				}
			}
		}()
	}
	if f, err := a.fencerFor(r); err == nil {
		if ch := f.Watch(wctx); ch != nil { // closes when wctx ends
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				for err := range ch {
					report("fence", fmt.Errorf("takeover: fenced: %w", err))
				}
			}()
		}
	}
	return h, nil
}

// roleFailed handles a held role whose resources gave up: release it so a standby takes
// it, and keep this node off it for a while.
func (a *Agent) roleFailed(ctx context.Context, st *lease.Store, f roleFailure) {
	role := f.held.rc.Role
	if h, ok := a.held[role]; !ok || h != f.held {
		return // already released
	}
	if f.source == "health" && a.restartLocally(ctx, st, f.held, f.err) {
		return
	}
	a.log.Error("role failed on this node; releasing it", zap.String("role", role),
		zap.String("source", f.source), zap.Error(f.err))
	now := time.Now()
	a.backoff[role] = now.Add(roleBackoff(a.cfg.TTL, a.failures.countRole(role, now)))
	a.stopRole(ctx, st, role, EventRelease, f.source+" failed: "+f.err.Error(), "", true)
}

// restartLocally restarts a role's exec (and what follows it: vip, health) after its
// health check failed, keeping the claim, up to exec.restarts times per
// exec.restart_window (Pacemaker's migration-threshold). false: the budget is spent or the
// restart failed, and the caller releases the role.
func (a *Agent) restartLocally(ctx context.Context, st *lease.Store, h *heldRole, cause error) bool {
	if h.spec.Exec == nil {
		return false
	}
	window := h.spec.Exec.RestartWindow.Std()
	recent := h.restarts[:0]
	for _, t := range h.restarts {
		if time.Since(t) < window {
			recent = append(recent, t)
		}
	}
	h.restarts = recent
	if len(h.restarts) >= h.spec.Exec.Restarts {
		return false
	}
	h.restarts = append(h.restarts, time.Now())
	a.log.Warn("health check failed; restarting the role locally", zap.String("role", h.rc.Role),
		zap.Int("restart", len(h.restarts)), zap.Int("of", h.spec.Exec.Restarts), zap.Error(cause))
	t := time.Now()
	steps, err := h.chain.Restart(ctx, h.rc, "exec")
	ev := lease.Event{Role: h.rc.Role, Node: a.cfg.Node, Kind: EventRestart, Token: h.claim.Token,
		Steps: steps, Total: time.Since(t), Detail: "health: " + cause.Error()}
	if err != nil {
		ev.Detail += "; restart: " + err.Error()
	}
	a.appendEvent(ctx, st, ev)
	a.metrics.transitions.WithLabelValues(h.rc.Role, EventRestart).Inc()
	return err == nil
}

// stopRole stops a held role in reverse order and, when release is set, gives its claim
// back with a last-holder record that is clean only if every resource stopped.
func (a *Agent) stopRole(ctx context.Context, st *lease.Store, role, kind, reason, target string, release bool) {
	if ev := a.stopRoleQuiet(ctx, st, role, kind, reason, target, release); ev != nil {
		a.appendEvent(ctx, st, *ev)
	}
}

// stopRoleQuiet is stopRole without writing the event, for callers that must stop
// several roles before spending time on etcd.
func (a *Agent) stopRoleQuiet(ctx context.Context, st *lease.Store, role, kind, reason, target string, release bool) *lease.Event {
	h, ok := a.held[role]
	if !ok {
		return nil
	}
	delete(a.held, role)
	a.syncLocalRoles() // before the stop: the service is going away now
	h.stop()
	h.wg.Wait()
	t := time.Now()
	steps, err := h.chain.Stop(ctx)
	ev := lease.Event{Role: role, Node: a.cfg.Node, Kind: kind, Token: h.claim.Token, Steps: steps, Detail: reason}
	if err != nil {
		ev.Detail += "; stop: " + err.Error()
		a.unfinished = append(a.unfinished, h.chain) // finishStops tries again
	}
	if release {
		last := &lease.LastHolder{Node: a.cfg.Node, NodeID: a.id, Token: h.claim.Token,
			Clean: err == nil, Reason: reason, Time: time.Now()}
		rctx, cancel := a.etcdCtx(context.WithoutCancel(ctx))
		rerr := timed(&ev.Steps, "release", func() error { return st.Release(rctx, h.claim, last, target) })
		cancel()
		if rerr != nil {
			a.log.Warn("release claim; retrying it", zap.String("role", role), zap.Error(rerr))
			a.releasing[role] = pendingRelease{claim: h.claim, last: last, target: target}
		}
	}
	ev.Total = time.Since(t)
	a.metrics.roleHeld.WithLabelValues(role).Set(0)
	a.metrics.transitions.WithLabelValues(role, kind).Inc()
	a.log.Info("role stopped", zap.String("role", role), zap.String("kind", kind), zap.String("reason", reason),
		zap.Int64("token", h.claim.Token), zap.Duration("duration", ev.Total), zap.Error(err))
	return &ev
}

// finishStopsTimeout bounds each later attempt to finish a role's stop.
const finishStopsTimeout = 10 * time.Second

// finishStops stops again the resources of roles whose stop failed, typically a
// demotion whose deadline cut the unmount or the LUN's detach short: by then the
// executable is dead and the LUN's I/O fails, so this only removes what is left (a
// mount, a loop device). Each attempt has its own bound; chains that still fail stay
// for the next call (the next session, the agent's exit).
func (a *Agent) finishStops(ctx context.Context) {
	var left []*Chain
	for _, c := range a.unfinished {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishStopsTimeout)
		steps, err := c.Stop(cctx)
		cancel()
		if err != nil {
			a.log.Warn("could not finish stopping a role's resources", zap.Any("steps", steps), zap.Error(err))
			left = append(left, c)
			continue
		}
		a.log.Info("finished stopping a role's resources", zap.Any("steps", steps))
	}
	a.unfinished = left
}

// stopAll stops every held role at the end of a session. If the lease may be gone the
// stop is bounded by the earliest moment etcd could expire it, so our executables are
// dead before another node can be granted the role; the claim is then not released
// (it is, or is about to be, gone) and the unclean last record makes the next holder fence.
func (a *Agent) stopAll(ctx context.Context, st *lease.Store, reason string) {
	if len(a.held) == 0 {
		return
	}
	a.mu.Lock()
	sess := a.sess
	a.mu.Unlock()
	fresh := sess != nil && a.keepaliveFresh(sess)
	var sctx context.Context
	var cancel context.CancelFunc
	if fresh {
		// Graceful shutdown: the lease is alive, stop properly and release cleanly.
		sctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	} else {
		deadline := time.Now()
		if sess != nil {
			deadline = sess.LastAck().Add(sess.TTL() - checkInterval(sess.TTL()))
		}
		sctx, cancel = context.WithDeadline(context.WithoutCancel(ctx), deadline)
		reason = "demoted: " + reason
	}
	defer cancel()
	kind := EventRelease
	if !fresh {
		kind = EventDemote
	}
	var evs []lease.Event
	for _, role := range a.heldNames() {
		if ev := a.stopRoleQuiet(sctx, st, role, kind, reason, "", fresh); ev != nil {
			evs = append(evs, *ev)
		}
	}
	for _, ev := range evs { // after every role is stopped: etcd may be slow or gone
		a.appendEvent(ctx, st, ev)
	}
}
