package lease

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestAllocateIDUniqueIdempotentNeverReused(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	s, _, _ := newTestStore(t)
	const nodes = 20
	ids := make([]uint32, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { ids[i], errs[i] = s.AllocateID(ctx, fmt.Sprintf("n%d", i)) })
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("AllocateID n%d: %v", i, errs[i])
		}
		if id < 1 || id > nodes || seen[id] {
			t.Fatalf("ids %v: want each of 1..%d once", ids, nodes)
		}
		seen[id] = true
	}
	again, err := s.AllocateID(ctx, "n3")
	if err != nil || again != ids[3] {
		t.Fatalf("AllocateID(n3) again = %d, %v; want %d", again, err, ids[3])
	}

	if err := s.RemoveNode(ctx, "n3"); err != nil {
		t.Fatalf("RemoveNode: %v", err)
	}
	readded, err := s.AllocateID(ctx, "n3")
	if err != nil || readded != nodes+1 {
		t.Fatalf("AllocateID after RemoveNode = %d, %v; want the fresh id %d", readded, err, nodes+1)
	}
	next, err := s.AllocateID(ctx, "newcomer")
	if err != nil || next != nodes+2 {
		t.Fatalf("AllocateID(newcomer) = %d, %v; want %d", next, err, nodes+2)
	}
}

func TestPutNodeIsBoundToTheSession(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	rec := NodeRecord{Name: "a", ID: 1, State: StateStandby, Version: "test", Since: time.Now()}
	if err := s.PutNode(ctx, sess, rec); err != nil {
		t.Fatalf("PutNode: %v", err)
	}
	v, err := s.View(ctx)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	got := v.Nodes["a"]
	if got.State != StateStandby || got.TTL != 5 || got.Lease != int64(sess.ID()) {
		t.Fatalf("record %+v: want standby, ttl 5, lease %x", got, int64(sess.ID()))
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := len(mustGet(ctx, t, cli, s.nodeKey("a")).Kvs); n != 0 {
		t.Fatalf("node record outlived its session")
	}
	if err := s.PutNode(ctx, sess, rec); !errors.Is(err, ErrSessionLost) {
		t.Fatalf("PutNode on a closed session = %v, want ErrSessionLost", err)
	}
}

func TestRemoveNodeDeletesOnlyThatNode(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	for _, n := range []string{"a", "ab"} { // "a" must not match "ab"'s keys
		if _, err := s.AllocateID(ctx, n); err != nil {
			t.Fatalf("AllocateID: %v", err)
		}
		if err := s.PutNode(ctx, sess, NodeRecord{Name: n, State: StateStandby}); err != nil {
			t.Fatalf("PutNode: %v", err)
		}
		if err := s.SetCordoned(ctx, n, true); err != nil {
			t.Fatalf("SetCordoned: %v", err)
		}
		if err := s.PutQualification(ctx, n, Qualification{Passed: true}); err != nil {
			t.Fatalf("PutQualification: %v", err)
		}
		if err := s.SendCommand(ctx, n, Command{Kind: CommandDrain}); err != nil {
			t.Fatalf("SendCommand: %v", err)
		}
	}
	if err := s.RemoveNode(ctx, "a"); err != nil {
		t.Fatalf("RemoveNode: %v", err)
	}
	left := mustGet(ctx, t, cli, s.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	var keys []string
	for _, kv := range left.Kvs {
		keys = append(keys, string(kv.Key[len(s.prefix):]))
	}
	want := []string{"commands/ab/", "cordoned/ab", "nodes-ids-next", "nodes-ids/ab", "nodes/ab", "qualified/ab"}
	if len(keys) != len(want) {
		t.Fatalf("keys after RemoveNode(a): %v, want %v", keys, want)
	}
	for i, k := range keys {
		if k[:min(len(k), len(want[i]))] != want[i] {
			t.Fatalf("keys after RemoveNode(a): %v, want %v", keys, want)
		}
	}
}

func TestSetCordonedOnOff(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, _, _ := newTestStore(t)
	tests := []struct {
		name string
		on   bool
	}{{"cordon", true}, {"cordon twice", true}, {"uncordon", false}, {"uncordon twice", false}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetCordoned(ctx, "a", tc.on); err != nil {
				t.Fatalf("SetCordoned: %v", err)
			}
			v, err := s.View(ctx)
			if err != nil {
				t.Fatalf("View: %v", err)
			}
			if v.Cordoned["a"] != tc.on {
				t.Fatalf("cordoned %t, want %t", v.Cordoned["a"], tc.on)
			}
		})
	}
}
