package lease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease/leasetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestNewSessionGrantedTTL(t *testing.T) {
	tests := []struct {
		name      string
		requested time.Duration
		granted   time.Duration
		warn      bool
	}{
		{name: "one second is granted as requested", requested: time.Second, granted: time.Second},
		{name: "fractions round up to whole seconds", requested: 1500 * time.Millisecond, granted: 2 * time.Second, warn: true},
	}
	_, cli, _ := newTestStore(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			sess, err := NewSession(testCtx(t, 10*time.Second), cli, tc.requested, zap.New(core))
			if err != nil {
				t.Fatalf("NewSession: %v", err)
			}
			defer func() { _ = sess.Close(context.Background()) }()
			if sess.TTL() != tc.granted || sess.RequestedTTL() != tc.requested {
				t.Fatalf("TTL %s requested %s, want %s and %s", sess.TTL(), sess.RequestedTTL(), tc.granted, tc.requested)
			}
			if warned := logs.FilterMessageSnippet("TTL different").Len() > 0; warned != tc.warn {
				t.Fatalf("warned about the TTL: %t, want %t", warned, tc.warn)
			}
		})
	}
}

func TestNewSessionRejectsSubSecondTTL(t *testing.T) {
	_, cli, _ := newTestStore(t)
	_, err := NewSession(testCtx(t, 10*time.Second), cli, 500*time.Millisecond, nil)
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("NewSession(500ms) = %v, want ErrInvalidArgument", err)
	}
}

func TestSessionKeepsLeaseAlivePastSeveralTTLs(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, time.Second)
	if _, err := cli.Put(ctx, "/alive", "1", clientv3WithLease(sess)); err != nil {
		t.Fatalf("put: %v", err)
	}
	first := sess.LastAck()
	deadline := time.Now().Add(4 * sess.TTL())
	var acks int
	prev := first
	for time.Now().Before(deadline) {
		select {
		case <-sess.Done():
			t.Fatalf("session lost while etcd is up: %v", sess.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if a := sess.LastAck(); a.After(prev) {
			acks++
			prev = a
		}
	}
	if acks < 6 { // one keepalive every TTL/3 over 4 TTLs is ~12
		t.Fatalf("LastAck advanced %d times over 4 TTLs, want at least 6", acks)
	}
	if age := time.Since(sess.LastAck()); age > sess.TTL() {
		t.Fatalf("last ack is %s old, more than the TTL", age)
	}
	if _, err := s.LeaseTimeLeft(ctx, sess.ID()); err != nil {
		t.Fatalf("LeaseTimeLeft = %v; want the lease alive", err)
	}
	if n := len(mustGet(ctx, t, cli, "/alive").Kvs); n != 1 {
		t.Fatalf("key bound to the lease vanished")
	}
	if sess.Err() != nil {
		t.Fatalf("Err = %v on a live session", sess.Err())
	}
}

func TestSessionDoneAfterEtcdStops(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	_, cli, etcd := newTestStore(t)
	sess := newTestSession(t, cli, time.Second)
	// Wait for a keepalive so that LastAck is one, not the grant.
	granted := sess.LastAck()
	waitFor(ctx, t, "a keepalive", func() bool { return sess.LastAck().After(granted) })

	stopped := time.Now()
	etcd.Stop()
	select {
	case <-sess.Done():
	case <-time.After(sess.TTL() + 3*time.Second): // generous slack: shared, -race machine
		t.Fatalf("Done not closed %s after etcd stopped", time.Since(stopped))
	}
	if elapsed := time.Since(stopped); elapsed > sess.TTL()+3*time.Second {
		t.Fatalf("Done closed %s after etcd stopped, want within TTL+slack", elapsed)
	}
	if !errors.Is(sess.Err(), ErrSessionLost) {
		t.Fatalf("Err = %v, want ErrSessionLost", sess.Err())
	}

	// No keepalive is sent any more, so the lease really expires server side, once
	// the restarted member has renewed its leases (leader promotion) and the TTL passes.
	etcd.Restart(t)
	fresh := etcd.Client(t)
	leasetest.WaitReady(ctx, t, fresh)
	s := NewStore(fresh, Prefix("test"), nil)
	waitFor(ctx, t, "the lease to expire server side", func() bool {
		_, err := s.LeaseTimeLeft(ctx, sess.ID())
		return errors.Is(err, ErrLeaseGone)
	})
}

func TestSessionLostWhenKeepalivesStop(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, time.Second)
	c, _, ok, err := s.TryClaim(ctx, sess, "web", "a")
	if err != nil || !ok {
		t.Fatalf("TryClaim = %v, %v", ok, err)
	}
	sess.skipKeepAlive.Store(true) // a hung node: nothing reaches etcd any more
	paused := time.Now()
	select {
	case <-sess.Done():
	case <-time.After(sess.TTL() + 3*time.Second):
		t.Fatalf("Done not closed %s after keepalives stopped", time.Since(paused))
	}
	// The local bound fires no later than the server: the claim may still be there now,
	// but it must vanish by itself.
	waitFor(ctx, t, "the claim to vanish with the lease", func() bool {
		return len(mustGet(ctx, t, cli, s.claimKey(c.Role)).Kvs) == 0
	})
	if err := s.MarkHolder(ctx, c, 1); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("MarkHolder on an expired claim = %v, want ErrNotHolder", err)
	}
}

func TestSessionLostWhenLeaseRevokedElsewhere(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	_, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 2*time.Second)
	if _, err := cli.Revoke(ctx, sess.ID()); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	select {
	case <-sess.Done(): // the next keepalive hears "not found", well before the TTL passes
	case <-time.After(sess.TTL()):
		t.Fatalf("Done not closed after the lease was revoked")
	}
	if !errors.Is(sess.Err(), ErrSessionLost) {
		t.Fatalf("Err = %v, want ErrSessionLost", sess.Err())
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatalf("Close of a revoked lease = %v, want nil", err)
	}
}

func TestSessionCloseRevokes(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	if _, _, ok, err := s.TryClaim(ctx, sess, "web", "a"); err != nil || !ok {
		t.Fatalf("TryClaim = %v, %v", ok, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel() // Close must revoke even with a cancelled ctx (shutdown)
	if err := sess.Close(cancelled); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// No waiting: revoke deletes the lease's keys at once, long before the 5s TTL.
	if n := len(mustGet(ctx, t, cli, s.claimKey("web")).Kvs); n != 0 {
		t.Fatalf("claim still present after Close")
	}
	select {
	case <-sess.Done():
	default:
		t.Fatalf("Done not closed after Close")
	}
	if !errors.Is(sess.Err(), ErrSessionLost) {
		t.Fatalf("Err after Close = %v, want ErrSessionLost", sess.Err())
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, _, err := s.TryClaim(ctx, sess, "web", "a"); !errors.Is(err, ErrSessionLost) {
		t.Fatalf("TryClaim on a closed session = %v, want ErrSessionLost", err)
	}
}
