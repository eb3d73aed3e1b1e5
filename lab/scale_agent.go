package lab

// The scale bench's lightweight agent (scale.go): its incarnations and sessions, and how
// a session reads and watches the spec and the claims. Claiming is in scale_agent_claim.go.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// scaleAgent is a lightweight agent: the real lease protocol without resources. Each
// incarnation (f.start) runs sessions until the bench crashes it or the run ends.
type scaleAgent struct {
	f    *scaleFarm
	name string
	cli  *clientv3.Client // shared with other agents
	st   *lease.Store
	id   uint32 // allocated before the start of day

	mu     sync.Mutex
	held   lease.Claim        // guarded by mu; Token 0: none
	cancel context.CancelFunc // guarded by mu; ends the current incarnation
	done   chan struct{}      // guarded by mu; closed when it returned
	// abandoned is when the incarnation stopped its keepalives; written by it before done
	// is closed, read after.
	abandoned time.Time
}

func (a *scaleAgent) heldClaim() lease.Claim {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

func (a *scaleAgent) setHeld(c lease.Claim) {
	a.mu.Lock()
	a.held = c
	a.mu.Unlock()
}

// crash ends the incarnation as a power loss would: its keepalives stop and nothing is
// revoked or released. It returns the moment the keepalives stopped and the claim the
// agent held just before.
func (a *scaleAgent) crash() (time.Time, lease.Claim) {
	a.mu.Lock()
	cancel, done, held := a.cancel, a.done, a.held
	a.mu.Unlock()
	cancel()
	<-done
	if a.abandoned.IsZero() { // it never had a session: it crashed now
		return time.Now(), held
	}
	return a.abandoned, held
}

// life runs sessions until ctx ends; a lost session is followed by a new one after a
// short wait, as the agent rejoins as a standby.
func (a *scaleAgent) life(ctx context.Context) {
	a.abandoned = time.Time{}
	for {
		err := a.session(ctx)
		if ctx.Err() != nil {
			return
		}
		a.f.rec.lost(a.f.o.Log, a.name, err)
		if Sleep(ctx, max(a.f.o.TTL/4, 100*time.Millisecond)) != nil {
			return
		}
	}
}

// session is one lease: register, read, watch, claim; it returns when the lease is lost
// (the error says why) or ctx ends (nil).
func (a *scaleAgent) session(ctx context.Context) error {
	ttl := a.f.o.TTL
	gctx, cancel := context.WithTimeout(ctx, ttl) // the retry loop must not hang on a busy etcd
	sess, err := lease.NewSession(gctx, a.cli, ttl, a.f.o.Log)
	cancel()
	if err != nil {
		return fmt.Errorf("lab: scale agent %s: %w", a.name, err)
	}
	defer func() {
		a.setHeld(lease.Claim{})
		if ctx.Err() != nil {
			// Crashed by the bench, or the run is over: keepalives stop, no revoke, so
			// the lease and its keys live until etcd expires them.
			a.abandoned = time.Now()
			sess.Abandon()
			return
		}
		// Lost: revoke as the agent does; bounded by the TTL, after which the lease has
		// expired anyway, and by its own context because ctx may be cancelled meanwhile.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sess.TTL())
		_ = sess.Close(cctx)
		cancel()
	}()
	s := &scaleSession{a: a, sess: sess}
	return s.run(ctx)
}

// scaleSession is one session's loop state; only its goroutine touches it.
type scaleSession struct {
	a      *scaleAgent
	sess   *lease.Session
	roles  []string               // spec roles in this node's candidate order
	claims map[string]lease.Claim // current claims by role, from reads and the watch
	// known is, by role, the revision a TryClaim answer showed the claim at. Watch events
	// up to it are older news (the watch may lag behind the transaction) and must not
	// undo it: a stale delete would make this node retry a role it already holds.
	known     map[string]int64
	published string // state|roles of the last node record written
}

func (s *scaleSession) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // also ends the watch
	defer cancel()
	rev, err := s.read(ctx)
	if err != nil {
		return err
	}
	watch := s.watch(ctx, rev+1)
	s.claimOrphans(ctx)
	if err := s.publish(ctx); err != nil {
		return err
	}
	s.a.f.rec.joined(s.a.name)
	var resync <-chan time.Time
	if s.a.f.o.FullView {
		t := time.NewTicker(fullViewInterval)
		defer t.Stop()
		resync = t.C
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-s.sess.Done():
			return s.sess.Err()
		case <-resync:
			_, err = s.read(ctx)
		case wr, ok := <-watch:
			switch {
			case !ok || wr.Err() != nil || wr.Canceled:
				var rev int64
				if rev, err = s.read(ctx); err == nil {
					watch = s.watch(ctx, rev+1)
				}
			case s.a.f.o.FullView:
				_, err = s.read(ctx) // the agent re-reads everything on every batch
			default:
				s.apply(wr.Events)
			}
		}
		if err != nil {
			s.a.f.o.Log.Warn("scale agent: read", zap.String("node", s.a.name), zap.Error(err))
			continue // the session and its expiry decide about outages, as in the agent
		}
		s.checkHeld(ctx)
		s.strays(ctx)
		s.claimOrphans(ctx)
		if err := s.publish(ctx); err != nil { // a no-op unless a write failed before
			s.a.f.o.Log.Warn("scale agent: publish", zap.String("node", s.a.name), zap.Error(err))
		}
	}
}

// read replaces the claims with a fresh read: the whole prefix (lease.Store.View) with
// FullView, else the spec and the roles/ directory, in one transaction so that the
// watch from its revision misses nothing of either.
func (s *scaleSession) read(ctx context.Context) (int64, error) {
	rctx, cancel := s.etcdCtx(ctx)
	defer cancel()
	if s.a.f.o.FullView {
		v, err := s.a.st.View(rctx)
		if err != nil {
			return 0, err
		}
		s.setRoles(v.Spec)
		s.claims, s.known = v.Claims, map[string]int64{}
		return v.Rev, nil
	}
	resp, err := s.a.cli.Txn(rctx).Then(clientv3.OpGet(s.specKey()), clientv3.OpGet(s.rolesDir(), clientv3.WithPrefix())).Commit()
	if err != nil {
		return 0, fmt.Errorf("lab: scale agent %s: read the spec and %s: %w", s.a.name, s.rolesDir(), err)
	}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		s.setSpec(kv.Value)
	}
	s.claims, s.known = map[string]lease.Claim{}, map[string]int64{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if role, ok := claimKeyRole(s.rolesDir(), string(kv.Key)); ok {
			s.claims[role] = lease.Claim{Role: role, Node: string(kv.Value), Token: kv.CreateRevision,
				Lease: clientv3.LeaseID(kv.Lease)}
		}
	}
	return resp.Header.Revision, nil
}

func (s *scaleSession) specKey() string { return s.a.st.Prefix() + "spec" }

// setSpec takes the roles of a stored spec; one that does not parse is logged and
// ignored (the agent keeps its previous spec).
func (s *scaleSession) setSpec(text []byte) {
	spec, err := lease.ParseSpec(text)
	if err != nil {
		s.a.f.o.Log.Warn("scale agent: stored spec", zap.String("node", s.a.name), zap.Error(err))
		return
	}
	s.setRoles(spec)
}

func (s *scaleSession) rolesDir() string { return s.a.st.Prefix() + "roles/" }

// claimKeyRole returns the role of a <dir><role>/claim key.
func claimKeyRole(dir, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, dir)
	if !ok {
		return "", false
	}
	role, ok := strings.CutSuffix(rest, "/claim")
	return role, ok && role != "" && !strings.Contains(role, "/")
}

// setRoles orders the spec's roles as the agent's candidateOrder does without preferred
// nodes: rotated by the node id, so concurrent standbys start on different roles.
func (s *scaleSession) setRoles(spec *lease.Spec) {
	if spec == nil {
		return
	}
	roles := make([]string, 0, len(spec.Roles))
	for _, r := range spec.Roles {
		roles = append(roles, r.Name)
	}
	if n := len(roles); n > 1 {
		k := int(s.a.id) % n
		roles = append(roles[k:], roles[:k]...)
	}
	s.roles = roles
}

// watch watches the whole prefix with FullView (as the agent does), else the range
// from roles/ to spec inclusive: in the key layout nothing else lies between them.
func (s *scaleSession) watch(ctx context.Context, rev int64) clientv3.WatchChan {
	if s.a.f.o.FullView {
		return s.a.st.Watch(ctx, rev)
	}
	return s.a.cli.Watch(ctx, s.rolesDir(), clientv3.WithRange(s.specKey()+"\x00"), clientv3.WithRev(rev))
}

// apply folds a watch batch of roles/ and spec into the claims and roles.
func (s *scaleSession) apply(evs []*clientv3.Event) {
	for _, ev := range evs {
		if string(ev.Kv.Key) == s.specKey() && ev.Type == clientv3.EventTypePut {
			s.setSpec(ev.Kv.Value)
			continue
		}
		role, ok := claimKeyRole(s.rolesDir(), string(ev.Kv.Key))
		switch {
		case !ok || ev.Kv.ModRevision <= s.known[role]:
		case ev.Type == clientv3.EventTypeDelete:
			delete(s.claims, role)
		default:
			s.claims[role] = lease.Claim{Role: role, Node: string(ev.Kv.Value), Token: ev.Kv.CreateRevision,
				Lease: clientv3.LeaseID(ev.Kv.Lease)}
		}
	}
}

// etcdCtx bounds one etcd round trip to half the TTL, as the agent's does for a standby.
func (s *scaleSession) etcdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.sess.TTL()/2)
}
