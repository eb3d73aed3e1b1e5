package lab

// How the scale bench's lightweight agent (scale_agent.go) claims roles as the real agent
// does: TryClaim + MarkHolder, its own stray claims, and the node record it publishes.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// checkHeld forgets a role whose claim is no longer ours (etcd is the source of truth).
func (s *scaleSession) checkHeld(ctx context.Context) {
	h := s.a.heldClaim()
	if h.Token == 0 {
		return
	}
	if c, ok := s.claims[h.Role]; ok && c.Token == h.Token && c.Node == s.a.name {
		return
	}
	s.a.setHeld(lease.Claim{})
	s.a.f.rec.failed(s.a.f.o.Log, s.a.name, h.Role, fmt.Errorf("%w: role %s token %d", lease.ErrNotHolder, h.Role, h.Token))
	if err := s.publish(ctx); err != nil {
		s.a.f.o.Log.Warn("scale agent: publish", zap.String("node", s.a.name), zap.Error(err))
	}
}

// strays handles claims etcd has under this session's lease that this node does not
// hold: a TryClaim whose deadline passed after etcd had committed it. The agent
// (takeover's claimOrphans) has no such step: there the role stays claimed, by a node
// that does not run it, until that node's lease ends. Here the node completes the
// takeover if it has room (TryClaim answers ok for its own session's claim) and releases
// the claim otherwise; the bench counts each such claim (ScaleRun.Stranded).
func (s *scaleSession) strays(ctx context.Context) {
	for _, role := range s.roles {
		c, ok := s.claims[role]
		if !ok || c.Node != s.a.name || c.Lease != s.sess.ID() || s.a.heldClaim().Token == c.Token {
			continue
		}
		s.a.f.rec.stranded()
		if s.a.heldClaim().Token == 0 {
			s.acquire(ctx, role)
			continue
		}
		rctx, cancel := s.etcdCtx(ctx)
		err := s.a.st.Release(rctx, c, nil, "")
		cancel()
		if err != nil {
			s.a.f.rec.failed(s.a.f.o.Log, s.a.name, role, err)
			continue
		}
		delete(s.claims, role)
		s.known[role] = c.Token // the watch may still bring the claim's own put
	}
}

// claimOrphans is the agent's claimOrphans with max_roles_per_node 1 and no placement:
// a free node whose keepalive is fresh tries the unheld roles in its candidate order
// until one TryClaim wins.
func (s *scaleSession) claimOrphans(ctx context.Context) {
	if s.a.heldClaim().Token != 0 || time.Since(s.sess.LastAck()) >= s.sess.TTL()-s.sess.TTL()/3 {
		return
	}
	for _, role := range s.roles {
		if _, held := s.claims[role]; !held && s.acquire(ctx, role) {
			return
		}
	}
}

// acquire is TryClaim, then (the agent fences the last holder here; these agents have
// nothing to fence) MarkHolder, then the node record. A failed MarkHolder releases the
// claim, as the agent's takeoverFailed does, so another standby can try.
func (s *scaleSession) acquire(ctx context.Context, role string) bool {
	a := s.a
	cctx, cancel := s.etcdCtx(ctx)
	c, prev, ok, err := a.st.TryClaim(cctx, s.sess, role, a.name)
	cancel()
	claimed := time.Now()
	if err != nil {
		a.f.rec.failed(a.f.o.Log, a.name, role, err)
		return false
	}
	s.claims[role], s.known[role] = c, c.Token
	if !ok {
		a.f.rec.raced() // another standby won the race
		return false
	}
	a.f.rec.wonRace(role, a.name, c.Token)
	// Unbounded but for the session, like the agent's takeover: it stops the moment the
	// lease is lost, because someone else may be taking over.
	mctx, cancel := sessionCtx(ctx, s.sess)
	err = a.st.MarkHolder(mctx, c, a.id)
	cancel()
	if err != nil {
		a.f.rec.failed(a.f.o.Log, a.name, role, err)
		rctx, cancel := s.etcdCtx(context.WithoutCancel(ctx))
		_ = a.st.Release(rctx, c, nil, "")
		cancel()
		return false
	}
	a.setHeld(c)
	a.f.rec.claimed(scaleClaim{Role: role, Node: a.name, Token: c.Token, PrevNode: prev.Node,
		PrevToken: prev.Token, ClaimedAt: claimed, MarkedAt: time.Now()})
	if err := s.publish(ctx); err != nil {
		a.f.o.Log.Warn("scale agent: publish", zap.String("node", a.name), zap.Error(err))
	}
	return true
}

// sessionCtx is ctx, also cancelled when sess is lost. The returned cancel stops and
// waits for the goroutine that watches the session.
func sessionCtx(ctx context.Context, sess *lease.Session) (context.Context, context.CancelFunc) {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-sess.Done():
			cancel()
		case <-sctx.Done():
		}
	}()
	return sctx, func() {
		cancel()
		wg.Wait()
	}
}

// publish writes the node record when its state or roles changed, as the agent does.
func (s *scaleSession) publish(ctx context.Context) error {
	rec := lease.NodeRecord{Name: s.a.name, ID: s.a.id, State: lease.StateStandby, Version: "bench-scale"}
	if h := s.a.heldClaim(); h.Token != 0 {
		rec.State, rec.Roles = lease.StateActive, []string{h.Role}
	}
	key := rec.State + "|" + strings.Join(rec.Roles, ",")
	if key == s.published {
		return nil
	}
	rec.Since = time.Now()
	pctx, cancel := s.etcdCtx(ctx)
	defer cancel()
	if err := s.a.st.PutNode(pctx, s.sess, rec); err != nil {
		return err
	}
	s.published = key
	return nil
}
