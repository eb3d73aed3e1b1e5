package lease

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestViewDecodesEverythingAtOneRevision(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	if _, _, err := s.PutSpec(ctx, []byte(fullSpec), 0, false); err != nil {
		t.Fatalf("PutSpec: %v", err)
	}
	id, err := s.AllocateID(ctx, "a")
	if err != nil {
		t.Fatalf("AllocateID: %v", err)
	}
	if err := s.PutNode(ctx, sess, NodeRecord{Name: "a", ID: id, State: StateActive, Roles: []string{"web"}}); err != nil {
		t.Fatalf("PutNode: %v", err)
	}
	c, _, _, err := s.TryClaim(ctx, sess, "web", "a")
	if err != nil {
		t.Fatalf("TryClaim: %v", err)
	}
	if err := s.MarkHolder(ctx, c, id); err != nil {
		t.Fatalf("MarkHolder: %v", err)
	}
	if err := s.SetCordoned(ctx, "b", true); err != nil {
		t.Fatalf("SetCordoned: %v", err)
	}
	if err := s.PutQualification(ctx, "b", Qualification{Passed: true, Checks: []Check{{Role: "web", Name: "mount", Passed: true}}, SpecRev: 7}); err != nil {
		t.Fatalf("PutQualification: %v", err)
	}
	if err := s.SendCommand(ctx, "a", Command{Kind: CommandMove, Role: "web", To: "b"}); err != nil {
		t.Fatalf("SendCommand: %v", err)
	}
	if err := s.AppendEvent(ctx, Event{Node: "a", Role: "web", Kind: EventTakeover}); err != nil {
		t.Fatalf("AppendEvent: %v", err)
	}
	// Damaged or foreign values must not blind the whole view.
	for k, v := range map[string]string{"nodes/bad": "{", "roles/db/last": "not json", "nodes-ids/bad": "x", "future/thing": "?"} {
		if _, err := cli.Put(ctx, s.prefix+k, v); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	if _, err := cli.Put(ctx, s.targetKey("web"), "b"); err != nil {
		t.Fatalf("put target: %v", err)
	}

	v, err := s.View(ctx)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	head := mustGet(ctx, t, cli, "/nothing").Header.Revision
	spec := mustGet(ctx, t, cli, s.key(keySpec)).Kvs[0]
	switch {
	case v.Rev != head:
		t.Errorf("Rev %d, want %d", v.Rev, head)
	case v.Spec == nil || len(v.Spec.Roles) != 2 || v.SpecRev != spec.ModRevision || v.SpecErr != nil:
		t.Errorf("spec %+v rev %d", v.Spec, v.SpecRev)
	case len(v.IDs) != 1 || v.IDs["a"] != id:
		t.Errorf("IDs %v", v.IDs)
	case len(v.Nodes) != 1 || v.Nodes["a"].State != StateActive || v.Nodes["a"].Roles[0] != "web":
		t.Errorf("Nodes %+v", v.Nodes)
	case len(v.Cordoned) != 1 || !v.Cordoned["b"]:
		t.Errorf("Cordoned %v", v.Cordoned)
	case len(v.Qualified) != 1 || v.Qualified["b"].SpecRev != 7 || v.Qualified["b"].Checks[0].Name != "mount":
		t.Errorf("Qualified %+v", v.Qualified)
	case len(v.Claims) != 1 || v.Claims["web"] != c:
		t.Errorf("Claims %+v, want %+v", v.Claims, c)
	case len(v.Last) != 1 || v.Last["web"].NodeID != id || v.Last["web"].Token != c.Token:
		t.Errorf("Last %+v", v.Last)
	case len(v.Targets) != 1 || v.Targets["web"] != "b":
		t.Errorf("Targets %v", v.Targets)
	case len(v.Commands) != 1 || v.Commands["a"][0].To != "b":
		t.Errorf("Commands %+v", v.Commands)
	}
}

func TestViewOfEmptyCluster(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, _, _ := newTestStore(t)
	v, err := s.View(ctx)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if v.Spec != nil || v.SpecRev != 0 || v.SpecErr != nil || len(v.Nodes) != 0 || v.Claims == nil {
		t.Fatalf("view of an empty cluster: %+v", v)
	}
}

func TestWatchFromViewSeesLaterChanges(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	c, _, _, err := s.TryClaim(ctx, sess, "web", "a")
	if err != nil {
		t.Fatalf("TryClaim: %v", err)
	}
	v, err := s.View(ctx)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := s.Watch(wctx, v.Rev+1)
	if err := s.Release(ctx, c, &LastHolder{Node: "a", Clean: true}, ""); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// Another cluster's keys must not show up.
	if _, err := cli.Put(ctx, Prefix("test2")+"spec", "x"); err != nil {
		t.Fatalf("put: %v", err)
	}
	var evs []*clientv3.Event
	for len(evs) < 2 {
		select {
		case resp := <-wch:
			if err := resp.Err(); err != nil {
				t.Fatalf("watch: %v", err)
			}
			evs = append(evs, resp.Events...)
		case <-ctx.Done():
			t.Fatalf("watch delivered %d events, want 2", len(evs))
		}
	}
	del, put := evs[0], evs[1]
	if del.Type != clientv3.EventTypeDelete || string(del.Kv.Key) != s.claimKey("web") || del.PrevKv == nil || string(del.PrevKv.Value) != "a" {
		t.Fatalf("first event %v, want the claim's delete with its previous value", del)
	}
	if put.Type != clientv3.EventTypePut || string(put.Kv.Key) != s.lastKey("web") {
		t.Fatalf("second event %v, want the put of last", put)
	}
}

func TestLeaseTimeLeft(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	left, err := s.LeaseTimeLeft(ctx, sess.ID())
	if err != nil || left < 4*time.Second || left > 5*time.Second {
		t.Fatalf("LeaseTimeLeft = %s, %v; want 4s or 5s", left, err)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.LeaseTimeLeft(ctx, sess.ID()); !errors.Is(err, ErrLeaseGone) {
		t.Fatalf("LeaseTimeLeft of a revoked lease = %v; want ErrLeaseGone", err)
	}
}

func TestViewReportsUndecodableSpec(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	// As a newer version might write it: a field this version does not know.
	resp, err := cli.Put(ctx, s.key(keySpec), "roles: []\nfuture_option: true\n")
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	v, err := s.View(ctx)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if v.Spec != nil || v.SpecRev != resp.Header.Revision || !errors.Is(v.SpecErr, ErrInvalidSpec) {
		t.Fatalf("spec %+v rev %d err %v; want nil, %d, ErrInvalidSpec", v.Spec, v.SpecRev, v.SpecErr, resp.Header.Revision)
	}
	if _, rev, err := s.Spec(ctx); !errors.Is(err, ErrInvalidSpec) || rev != resp.Header.Revision {
		t.Fatalf("Spec = rev %d, %v; want the revision and ErrInvalidSpec", rev, err)
	}
}
