package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Session is one etcd lease kept alive by its own loop: a KeepAliveOnce every TTL/3, each
// bounded by a timeout of TTL/3. Unlike clientv3's KeepAlive, the loop knows when each
// acknowledged request was sent, which gives a conservative local bound on the server's
// expiry: the server's deadline is never earlier than LastAck()+TTL().
//
// Done closes when the lease is known lost: etcd answered that it does not exist (or TTL
// <= 0), or LastAck()+TTL() passed on the monotonic clock, or Close was called. A lost
// session stays lost; make a new one.
type Session struct {
	cli       *clientv3.Client
	log       *zap.Logger
	id        clientv3.LeaseID
	ttl       time.Duration // granted by etcd
	requested time.Duration
	interval  time.Duration // between keepalives; each attempt is bounded by half of it

	mu      sync.Mutex
	lastAck time.Time // guarded by mu; monotonic send time of the last acked keepalive
	lostErr error     // guarded by mu; why Done closed

	done     chan struct{}
	doneOnce sync.Once

	stop     context.CancelFunc // stops the keepalive loop
	loopDone chan struct{}      // closed when the loop returned

	closeOnce sync.Once
	closeErr  error

	// skipKeepAlive is a test knob that simulates a hung node or a partition: the loop
	// keeps running its expiry timer but sends nothing.
	skipKeepAlive atomic.Bool
}

// NewSession grants a lease of ttl (rounded up to whole seconds; at least 1s) and starts
// keeping it alive. ctx bounds only the grant: the session lives until Close or until it
// is lost. etcd raises TTLs below its minimum (1.5 election timeouts, so 2s with default
// timings); TTL reports what was granted and a warning is logged when it differs.
func NewSession(ctx context.Context, cli *clientv3.Client, ttl time.Duration, log *zap.Logger) (*Session, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("%w: session ttl %s: want at least 1s (etcd TTLs are whole seconds)",
			ErrInvalidArgument, ttl)
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	sent := time.Now()
	resp, err := cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("lease: grant lease of %ds: %w", secs, err)
	}
	granted := time.Duration(resp.TTL) * time.Second
	s := &Session{
		cli:       cli,
		log:       log.With(zap.String("lease", fmt.Sprintf("%x", resp.ID))),
		id:        resp.ID,
		ttl:       granted,
		requested: ttl,
		interval:  granted / 3,
		lastAck:   sent, // the lease's deadline started after we sent the grant
		done:      make(chan struct{}),
		loopDone:  make(chan struct{}),
	}
	if granted != ttl {
		s.log.Warn("etcd granted a lease TTL different from the requested one; timings follow the granted TTL",
			zap.Duration("requested", ttl), zap.Duration("granted", granted))
	}
	loopCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.run(loopCtx)
	return s, nil
}

// ID returns the etcd lease id.
func (s *Session) ID() clientv3.LeaseID { return s.id }

// TTL returns the TTL etcd granted, which may be greater than the requested one.
func (s *Session) TTL() time.Duration { return s.ttl }

// RequestedTTL returns the TTL passed to NewSession.
func (s *Session) RequestedTTL() time.Duration { return s.requested }

// LastAck returns the monotonic time at which the last acknowledged keepalive request
// (or the grant) was sent. The lease lives at least until LastAck()+TTL() on the server.
func (s *Session) LastAck() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastAck
}

// Done returns a channel closed when the lease is known lost or the session is closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while the session is alive and an error wrapping ErrSessionLost, with
// the reason, once Done is closed.
func (s *Session) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostErr
}

// Close stops the keepalive loop, waits for it, and revokes the lease so that its keys
// (claims, node record) vanish at once instead of after the TTL. The revoke deliberately
// ignores ctx's cancellation and deadline: Close is typically called during shutdown with
// an already cancelled ctx, yet revoking is what lets a standby take over immediately. It
// is bounded by the TTL instead, because once the TTL has passed without keepalives the
// lease has expired anyway. A lease that is already gone is not an error. Close is
// idempotent; later calls return the first call's result.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.loopDone
		s.markLost("session closed")
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ttl)
		defer cancel()
		_, err := s.cli.Revoke(rctx, s.id)
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.closeErr = fmt.Errorf("lease: revoke lease %x: %w", int64(s.id), err)
		}
	})
	return s.closeErr
}

// Abandon stops the keepalive loop without revoking the lease, so the keys bound to it
// live until etcd expires it. A holder that keeps serving through an etcd outage
// (etcd_outage: keep-running) needs its claims to outlive this session until the next
// one carries them over. After Abandon, Close does nothing.
func (s *Session) Abandon() {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.loopDone
		s.markLost("session abandoned")
	})
}

// run is the keepalive loop, owned by the Session: Close stops it and waits for it.
func (s *Session) run(ctx context.Context) {
	defer close(s.loopDone)
	expiry := time.NewTimer(time.Until(s.LastAck().Add(s.ttl)))
	defer expiry.Stop()
	next := time.NewTimer(s.interval)
	defer next.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-expiry.C:
			s.markLost("no keepalive acknowledged within the TTL")
			return
		case <-next.C:
		}
		if s.skipKeepAlive.Load() {
			next.Reset(s.interval)
			continue
		}
		sent, err := s.keepAliveOnce(ctx)
		switch {
		case err == nil:
			if failing {
				s.log.Info("lease keepalive recovered")
				failing = false
			}
			// Timers made by Go >= 1.23 drop a stale expiry on Reset, so the deadline
			// is always the one of the newest acknowledged send.
			expiry.Reset(time.Until(sent.Add(s.ttl)))
			next.Reset(time.Until(sent.Add(s.interval)))
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.markLost("etcd says the lease does not exist")
			return
		case ctx.Err() != nil:
			return
		default:
			if !failing {
				s.log.Warn("lease keepalive failed; retrying", zap.Error(err),
					zap.Duration("left", time.Until(s.LastAck().Add(s.ttl))))
				failing = true
			}
			// Retry at once: each attempt is bounded, and every chance before the
			// deadline counts (an etcd election ends between two of them).
			next.Reset(s.interval / 8)
		}
	}
}

// keepAliveOnce sends one keepalive bounded by half the interval and, on success,
// records the time the request was sent as LastAck. Half: a request that went to an
// etcd leader as it died hangs until its bound, and the retry after it must still come
// before the holder has to demote (LastAck + TTL - TTL/3).
func (s *Session) keepAliveOnce(ctx context.Context) (time.Time, error) {
	sent := time.Now() // read before sending: the conservative side of the deadline
	cctx, cancel := context.WithTimeout(ctx, s.interval/2)
	defer cancel()
	resp, err := s.cli.KeepAliveOnce(cctx, s.id)
	if err != nil {
		return sent, err
	}
	if resp.TTL <= 0 {
		return sent, rpctypes.ErrLeaseNotFound
	}
	s.mu.Lock()
	if sent.After(s.lastAck) {
		s.lastAck = sent
	}
	s.mu.Unlock()
	return sent, nil
}

// markLost closes Done once, remembering why.
func (s *Session) markLost(reason string) {
	s.doneOnce.Do(func() {
		s.mu.Lock()
		s.lostErr = fmt.Errorf("%w: lease %x: %s", ErrSessionLost, int64(s.id), reason)
		age := time.Since(s.lastAck)
		s.mu.Unlock()
		if reason != "session closed" {
			s.log.Warn("lease session lost", zap.String("reason", reason), zap.Duration("since_last_ack", age))
		}
		close(s.done)
	})
}
