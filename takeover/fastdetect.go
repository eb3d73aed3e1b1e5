package takeover

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/heartbeat"
	"github.com/understudy-ha/understudy/lease"
)

// Fast detection (roles with detection: fast). A holder of such roles sends a heartbeat
// to every peer each heartbeat.interval. A standby suspects the holder when none came
// for heartbeat.misses intervals (from the holder's current lease); it then asks the
// holder's agent directly over another path (its health endpoint); only if that fails
// too, and only while its own etcd session is fresh, does it act: one etcd transaction
// makes it the only standby fencing that holder (lease.StartFencing), it fences and
// verifies, revokes the holder's lease, claims the role and takes over as usual. A
// holder that was merely slow finds its lease gone and stops; its writes already fail
// at the storage. Safety rests on the fence; speed on the heartbeats.

// fastState is the agent's fast-detection state. self is shared with the heartbeat
// goroutine; the rest belongs to the loop goroutine.
type fastState struct {
	hb    *heartbeat.Service // nil: heartbeats not configured
	self  atomic.Pointer[hbSelf]
	probe *agentProber // the second check; set with heartbeats

	watching  map[string]claimSeen    // role -> the claim being watched, since when
	preSteps  map[string][]lease.Step // role -> steps of an early fence, for the takeover event
	preFenced map[string]int64        // role -> token of the holder already fenced early
	undecided map[string]int64        // role -> token whose undecided probe was logged
}

type hbSelf struct {
	packet heartbeat.Packet
	to     []string
	send   bool
}

type claimSeen struct {
	token int64
	since time.Time // monotonic: when this node first saw the claim
}

func newFastState() fastState {
	return fastState{watching: map[string]claimSeen{}, preSteps: map[string][]lease.Step{},
		preFenced: map[string]int64{}, undecided: map[string]int64{}}
}

// startHeartbeats starts the heartbeat service when the config enables it; the
// returned function stops it and waits for it.
func (a *Agent) startHeartbeats(ctx context.Context) (func(), error) {
	if a.cfg.HeartbeatListen == "" {
		return func() {}, nil
	}
	key, err := os.ReadFile(a.cfg.HeartbeatKeyFile)
	if err != nil {
		return nil, fmt.Errorf("takeover: heartbeat_key_file: %w", err)
	}
	svc, err := heartbeat.Listen(heartbeat.Config{Listen: a.cfg.HeartbeatListen, Key: key,
		Interval: 50 * time.Millisecond, Log: a.log.Named("heartbeat")})
	if err != nil {
		return nil, fmt.Errorf("takeover: %w", err)
	}
	a.fast.hb = svc
	// Not ended by ctx: a stopping agent releases its roles after ctx is done, and
	// must keep sending heartbeats until it has, or a standby would fence it mid-way.
	// Run stops the service after stopAll.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		svc.Run(hctx, func() (heartbeat.Packet, []string, bool) {
			s := a.fast.self.Load()
			if s == nil {
				return heartbeat.Packet{}, nil, false
			}
			return s.packet, s.to, s.send
		})
	})
	return func() { cancel(); wg.Wait() }, nil
}

// updateHeartbeat sets what the heartbeat goroutine sends: the fast roles this node
// holds, to every peer that listens for heartbeats. Called by the loop after each
// reconcile.
func (l *loop) updateHeartbeat(v *lease.View) {
	a := l.a
	if a.fast.hb == nil || v.Spec == nil {
		return
	}
	a.fast.hb.SetInterval(v.Spec.Heartbeat.Interval.Std())
	s := &hbSelf{packet: heartbeat.Packet{Node: a.cfg.Node, NodeID: a.id, Lease: int64(l.sess.ID())}}
	for _, r := range v.Spec.Roles {
		if h, ok := a.held[r.Name]; ok && r.Detection == lease.DetectFast {
			s.packet.Roles = append(s.packet.Roles, heartbeat.RoleToken{Role: r.Name, Token: h.claim.Token})
		}
	}
	for name, rec := range v.Nodes {
		if name != a.cfg.Node && rec.Heartbeat != "" {
			s.to = append(s.to, rec.Heartbeat)
		}
	}
	s.send = len(s.packet.Roles) > 0
	a.fast.self.Store(s)
}

// sessionFresh: this node's own etcd session was confirmed within half a TTL, so it is
// not the one cut off.
func (l *loop) sessionFresh() bool {
	return time.Since(l.sess.LastAck()) < l.sess.TTL()/2
}

// fastDetect runs on every check tick: it looks for a fast-detected role whose holder
// went silent, checks the holder a second way, and takes the role over early if both
// say it is dead. At most one such takeover per call.
func (l *loop) fastDetect(ctx context.Context) {
	a := l.a
	v := a.view
	if a.fast.hb == nil || v == nil || v.Spec == nil || !v.Spec.HasFast() {
		return
	}
	if a.draining || v.Cordoned[a.cfg.Node] || len(a.held) >= v.Spec.MaxRolesPerNode || !l.sessionFresh() {
		return
	}
	window := v.Spec.Heartbeat.Window()
	for _, r := range v.Spec.Roles {
		c, held := v.Claims[r.Name]
		if r.Detection != lease.DetectFast || !held || c.Node == a.cfg.Node {
			delete(a.fast.watching, r.Name)
			continue
		}
		seen := a.fast.watching[r.Name]
		if seen.token != c.Token {
			seen = claimSeen{token: c.Token, since: time.Now()}
			a.fast.watching[r.Name] = seen
		}
		rec, live := v.Nodes[c.Node]
		if !live || rec.Heartbeat == "" || rec.Health == "" || v.Fencing[r.Name] != "" || !l.qualifiedFor(v, r.Name) {
			// Gone already (the lease path has it), not sending heartbeats, no second
			// check possible (no health endpoint), or someone is fencing it.
			continue
		}
		last := seen.since
		if h, ok := a.fast.hb.LastHeard(c.Node); ok && h.Packet.Lease == int64(c.Lease) && h.At.After(last) {
			last = h.At
		}
		suspected := time.Now()
		if suspected.Sub(last) < window {
			continue
		}
		res, probe, perr := a.fast.probe.probe(ctx, rec, window)
		switch res {
		case probeAlive, probeNoEndpoint:
			a.log.Debug("holder silent but not proven dead", zap.String("role", r.Name), zap.String("holder", c.Node),
				zap.Stringer("probe", res))
			continue
		case probeUndecided:
			// Something answers but TLS between us fails: never fence on that. Logged once
			// per claim; the lease path still acts if the holder is really gone.
			if a.fast.undecided[r.Name] != c.Token {
				a.fast.undecided[r.Name] = c.Token
				a.log.Warn("fast detection: holder silent but its health endpoint cannot be checked; leaving it to the lease",
					zap.String("role", r.Name), zap.String("holder", c.Node), zap.Int64("token", c.Token), zap.Error(perr))
			}
			continue
		}
		l.fastTakeover(ctx, v, r, c, last, []lease.Step{
			{Name: "detect", Duration: suspected.Sub(last)},
			{Name: "probe", Duration: probe},
		})
		return
	}
}

// fastTakeover: the holder of r is dead by both checks. Become the only node fencing
// it, fence and verify, revoke its lease, claim and take over. Any failure leaves the
// role to the lease path (its lease still expires) and backs off.
func (l *loop) fastTakeover(ctx context.Context, v *lease.View, r lease.RoleSpec, c lease.Claim, lastHeard time.Time, steps []lease.Step) {
	a, log := l.a, l.a.log.With(zap.String("role", r.Name), zap.String("holder", c.Node), zap.Int64("token", c.Token))
	prev, ok := v.Last[r.Name]
	if !ok || prev.Node != c.Node || prev.Token != c.Token {
		return // the holder had not recorded itself yet: let its lease decide
	}
	cctx, cancel := a.etcdCtx(ctx)
	won, err := l.st.StartFencing(cctx, l.sess, r.Name, a.cfg.Node, c.Token)
	cancel()
	if err != nil || !won {
		if err != nil {
			log.Warn("fast detection: start fencing", zap.Error(err))
		}
		return
	}
	defer func() {
		dctx, cancel := a.etcdCtx(context.WithoutCancel(ctx))
		defer cancel()
		if err := l.st.DoneFencing(dctx, r.Name, a.cfg.Node); err != nil {
			log.Warn("fast detection: clear fencing mark", zap.Error(err))
		}
	}()
	log.Warn("holder silent and its agent unreachable: fencing it before its lease expires",
		zap.Duration("silent", time.Since(lastHeard)))
	fenceStep, _, err := a.fenceLast(ctx, r, prev)
	steps = append(steps, fenceStep)
	if err == nil {
		err = timed(&steps, "revoke", func() error {
			rctx, cancel := a.etcdCtx(ctx)
			defer cancel()
			return l.st.RevokeLease(rctx, c.Lease)
		})
	}
	if err != nil {
		log.Error("fast detection: early takeover abandoned; the lease path remains", zap.Error(err))
		a.backoff[r.Name] = time.Now().Add(2 * l.sess.TTL())
		return
	}
	a.orphaned[r.Name] = lastHeard
	a.fast.preSteps[r.Name] = steps
	a.fast.preFenced[r.Name] = c.Token
	cctx, cancel = a.etcdCtx(ctx)
	cl, prevNow, won, err := l.st.TryClaim(cctx, l.sess, r.Name, a.cfg.Node)
	cancel()
	if err != nil || !won {
		log.Warn("fast detection: fenced and revoked, but the claim went elsewhere", zap.Error(err))
		delete(a.fast.preSteps, r.Name)
		return
	}
	a.acquire(ctx, l.st, l.sess, r, cl, prevNow)
}
