package lease

import (
	"context"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease/leasetest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCtx returns a context bounding a blocking test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newTestStore starts an etcd member and returns a Store on it, a client, and the member.
func newTestStore(t *testing.T) (*Store, *clientv3.Client, *leasetest.Etcd) {
	t.Helper()
	etcd := leasetest.Start(t)
	cli := etcd.Client(t)
	return NewStore(cli, Prefix("test"), zaptest.NewLogger(t)), cli, etcd
}

// newTestSession returns a session closed on cleanup.
func newTestSession(t *testing.T, cli *clientv3.Client, ttl time.Duration) *Session {
	t.Helper()
	sess, err := NewSession(testCtx(t, 10*time.Second), cli, ttl, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	return sess
}

// waitFor polls cond every 20ms until it holds or ctx is done.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// mustGet returns the kvs at key.
func mustGet(ctx context.Context, t *testing.T, cli *clientv3.Client, key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	t.Helper()
	resp, err := cli.Get(ctx, key, opts...)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return resp
}

// clientv3WithLease binds a put to sess's lease.
func clientv3WithLease(sess *Session) clientv3.OpOption { return clientv3.WithLease(sess.ID()) }
