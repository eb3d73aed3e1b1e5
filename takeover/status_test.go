package takeover

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease"
)

func statusSpec() *lease.Spec {
	return &lease.Spec{
		MaxRolesPerNode: 1,
		Roles: []lease.RoleSpec{
			{Name: "web", VIP: &lease.VIPSpec{Address: "10.99.0.10/24"}},
			{Name: "db"},
		},
	}
}

func TestBuildStatus(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		view       *lease.View
		wantNodes  []NodeStatus
		wantRoles  []RoleStatus
		wantUnheld []string
	}{
		{
			name:      "nil view",
			view:      nil,
			wantNodes: []NodeStatus{},
			wantRoles: []RoleStatus{},
		},
		{
			name: "no spec, one dead node",
			view: &lease.View{Rev: 7, IDs: map[string]uint32{"a": 1}},
			wantNodes: []NodeStatus{
				{Name: "a", ID: 1, State: StateDown, Roles: []string{}, Qualified: QualifiedNone},
			},
			wantRoles: []RoleStatus{},
		},
		{
			name: "all held, standby qualified",
			view: &lease.View{
				Rev: 42, Spec: statusSpec(), SpecRev: 5,
				IDs: map[string]uint32{"a": 1, "b": 2, "d": 4},
				Nodes: map[string]lease.NodeRecord{
					"a": {Name: "a", ID: 1, State: "active", Roles: []string{"web"}, Version: "v1", Since: t0, Lease: 99},
					"b": {Name: "b", ID: 2, State: "active", Since: t0, Health: "http://127.0.0.1:7070"},
					"d": {Name: "d", ID: 4, State: "standby", Since: t0},
				},
				Qualified: map[string]lease.Qualification{"d": {Passed: true, SpecRev: 5}},
				Claims: map[string]lease.Claim{
					"web": {Role: "web", Node: "a", Token: 10},
					"db":  {Role: "db", Node: "b", Token: 12},
				},
				Last: map[string]lease.LastHolder{
					"web": {Node: "a", NodeID: 1, Token: 10, Time: t0},
					// A record from an earlier tenure of b must not date the current one.
					"db": {Node: "b", NodeID: 2, Token: 3, Clean: true, Time: t0.Add(-time.Hour)},
				},
			},
			wantNodes: []NodeStatus{
				{Name: "a", ID: 1, State: "active", Roles: []string{"web"}, Since: t0, Qualified: QualifiedNone, Version: "v1"},
				{Name: "b", ID: 2, State: "active", Roles: []string{"db"}, Since: t0, Qualified: QualifiedNone, Health: "http://127.0.0.1:7070"},
				{Name: "d", ID: 4, State: "standby", Roles: []string{}, Since: t0, Qualified: QualifiedPassed},
			},
			wantRoles: []RoleStatus{
				{Name: "web", Holder: "a", Token: 10, VIP: "10.99.0.10/24", Since: t0, LastHolder: "a"},
				{Name: "db", Holder: "b", Token: 12, LastHolder: "b", LastClean: true},
			},
		},
		{
			name: "holder died, role unheld, orphan claim, cordoned node",
			view: &lease.View{
				Rev: 50, Spec: statusSpec(),
				IDs: map[string]uint32{"a": 1, "b": 2, "e": 5},
				Nodes: map[string]lease.NodeRecord{
					"b": {Name: "b", ID: 2, State: "active", Since: t0},
					"e": {Name: "e", ID: 5, State: "cordoned", Since: t0},
					// Live without an id allocation: shown, id taken from the record.
					"x": {Name: "x", ID: 9, State: "probation", Since: t0},
				},
				Cordoned:  map[string]bool{"e": true},
				Qualified: map[string]lease.Qualification{"e": {Passed: false}},
				Claims: map[string]lease.Claim{
					"db":  {Role: "db", Node: "b", Token: 12},
					"old": {Role: "old", Node: "b", Token: 8},
				},
				Last:    map[string]lease.LastHolder{"web": {Node: "a", NodeID: 1, Token: 10, Time: t0}},
				Targets: map[string]string{"db": "e"},
			},
			wantNodes: []NodeStatus{
				{Name: "a", ID: 1, State: StateDown, Roles: []string{}, Qualified: QualifiedNone},
				{Name: "b", ID: 2, State: "active", Roles: []string{"db", "old"}, Since: t0, Qualified: QualifiedNone},
				{Name: "e", ID: 5, State: "cordoned", Roles: []string{}, Since: t0, Qualified: QualifiedFailed, Cordoned: true},
				{Name: "x", ID: 9, State: "probation", Roles: []string{}, Since: t0, Qualified: QualifiedNone},
			},
			wantRoles: []RoleStatus{
				{Name: "web", VIP: "10.99.0.10/24", LastHolder: "a"},
				{Name: "db", Holder: "b", Token: 12, Target: "e"},
				{Name: "old", Holder: "b", Token: 8},
			},
			wantUnheld: []string{"web"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got := BuildStatus(ctx, nil, "prod", tc.view)
			if got.Cluster != "prod" {
				t.Errorf("Cluster = %q, want prod", got.Cluster)
			}
			if tc.view != nil && got.Rev != tc.view.Rev {
				t.Errorf("Rev = %d, want %d", got.Rev, tc.view.Rev)
			}
			if !reflect.DeepEqual(got.Nodes, tc.wantNodes) {
				t.Errorf("Nodes:\n got %+v\nwant %+v", got.Nodes, tc.wantNodes)
			}
			if !reflect.DeepEqual(got.Roles, tc.wantRoles) {
				t.Errorf("Roles:\n got %+v\nwant %+v", got.Roles, tc.wantRoles)
			}
			if !reflect.DeepEqual(got.Unheld, tc.wantUnheld) {
				t.Errorf("Unheld = %v, want %v", got.Unheld, tc.wantUnheld)
			}
			if got.Held() != (len(tc.wantUnheld) == 0) {
				t.Errorf("Held() = %v with Unheld %v", got.Held(), got.Unheld)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	in := ClusterStatus{
		Cluster: "prod", Rev: 3,
		Nodes: []NodeStatus{{Name: "a", ID: 1, State: "active", Roles: []string{"web"},
			LeaseLeft: 2500 * time.Millisecond, Since: t0, Qualified: QualifiedPassed}},
		Roles:  []RoleStatus{{Name: "web", Holder: "a", Token: 9, LastHolder: "a"}, {Name: "db"}},
		Unheld: []string{"db"},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"revision":3`, `"lease_left_ms":2500`, `"last_holder":"a"`,
		`"last_clean":false`, `"unheld":["db"]`, `"since":"2025-03-01T12:00:00Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	if strings.Contains(string(b), `"LeaseLeft"`) {
		t.Errorf("JSON %s has a Go field name", b)
	}
	var out ClusterStatus
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

// TestBuildStatusCancelled: lease lookups are bounded by ctx; once it is done they are
// skipped and LeaseLeft stays 0, while the rest of the status is still built.
func TestBuildStatusCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st := lease.NewStore(nil, "/understudy/test/", nil) // never reached: ctx is done
	v := &lease.View{
		Rev:   3,
		IDs:   map[string]uint32{"a": 1},
		Nodes: map[string]lease.NodeRecord{"a": {Name: "a", ID: 1, State: "standby", Lease: 77}},
	}
	got := BuildStatus(ctx, st, "c", v)
	if len(got.Nodes) != 1 || got.Nodes[0].State != "standby" || got.Nodes[0].LeaseLeft != 0 {
		t.Errorf("nodes = %+v", got.Nodes)
	}
}
