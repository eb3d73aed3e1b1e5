package takeover

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/understudy-ha/understudy/lease"
)

// Qualification summaries shown by status.
const (
	QualifiedPassed = "passed"
	QualifiedFailed = "failed"
	QualifiedNone   = "none"
)

// ClusterStatus is the operator's picture of one cluster at one etcd revision. It is shared
// by `understudy status` and the health endpoint's /status, so both always agree.
type ClusterStatus struct {
	Cluster string       `json:"cluster"`
	Rev     int64        `json:"revision"`
	Nodes   []NodeStatus `json:"nodes"`
	// Roles lists the spec's roles in spec order, then roles that are still held but no
	// longer in the spec (sorted), so an operator sees every running service.
	Roles []RoleStatus `json:"roles"`
	// Unheld names the spec roles nobody holds: the cluster is degraded while non-empty.
	Unheld []string `json:"unheld,omitempty"`
}

// NodeStatus is one known node: every node with an id, live or not.
type NodeStatus struct {
	Name string `json:"name"`
	ID   uint32 `json:"id"`
	// State is the live record's state, or "down" when the node has no live session.
	State string `json:"state"`
	// Roles the node holds according to the claims (authoritative), sorted.
	Roles []string `json:"roles"`
	// LeaseLeft is the node session's time to live as etcd reports it; 0 when unknown.
	// JSON: lease_left_ms (integer milliseconds).
	LeaseLeft time.Duration `json:"-"`
	Since     time.Time     `json:"since,omitzero"` // wall clock, display only
	Qualified string        `json:"qualified"`      // passed|failed|none
	Cordoned  bool          `json:"cordoned"`
	Version   string        `json:"version,omitempty"`
	Health    string        `json:"health,omitempty"` // the node's health endpoint URL
}

// RoleStatus is one role and its claim.
type RoleStatus struct {
	Name   string `json:"name"`
	Holder string `json:"holder"` // "" = unheld
	Token  int64  `json:"token,omitempty"`
	VIP    string `json:"vip,omitempty"`
	// Since is when the holder took the role, from the last-holder record when that record
	// names the current claim (node and token); zero otherwise.
	Since      time.Time `json:"since,omitzero"`
	LastHolder string    `json:"last_holder,omitempty"`
	LastClean  bool      `json:"last_clean"`
	Target     string    `json:"target,omitempty"` // handoff target of a pending `role move`
}

// nodeStatusJSON is NodeStatus's wire form; the alias drops the methods so encoding does
// not recurse, and LeaseLeftMS carries the duration as integer milliseconds.
type nodeStatusJSON struct {
	nodeStatusAlias
	LeaseLeftMS int64 `json:"lease_left_ms"`
}

type nodeStatusAlias NodeStatus

// MarshalJSON encodes LeaseLeft as lease_left_ms.
func (n NodeStatus) MarshalJSON() ([]byte, error) {
	return json.Marshal(nodeStatusJSON{nodeStatusAlias(n), n.LeaseLeft.Milliseconds()})
}

// UnmarshalJSON is the inverse of MarshalJSON, for clients of the health endpoint.
func (n *NodeStatus) UnmarshalJSON(b []byte) error {
	var w nodeStatusJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*n = NodeStatus(w.nodeStatusAlias)
	n.LeaseLeft = time.Duration(w.LeaseLeftMS) * time.Millisecond
	return nil
}

// Held reports whether every role of the spec has a holder.
func (s ClusterStatus) Held() bool { return len(s.Unheld) == 0 }

// BuildStatus turns one consistent View into a ClusterStatus. When st is non-nil it asks
// etcd for each live node's lease time left, bounded by ctx; a failed or cancelled lookup
// leaves LeaseLeft 0 rather than failing the whole status, because status is most needed
// exactly when etcd is struggling. A nil st skips the lookups.
func BuildStatus(ctx context.Context, st *lease.Store, cluster string, v *lease.View) ClusterStatus {
	cs := ClusterStatus{Cluster: cluster, Nodes: []NodeStatus{}, Roles: []RoleStatus{}}
	if v == nil {
		return cs
	}
	cs.Rev = v.Rev
	held := rolesByNode(v.Claims)
	for _, name := range nodeNames(v) {
		cs.Nodes = append(cs.Nodes, nodeStatus(ctx, st, v, name, held[name]))
	}
	cs.Roles, cs.Unheld = roleStatuses(v)
	return cs
}

// nodeNames is every known node: those with an id plus live ones (a live record without an
// id should not exist, but status must show it rather than hide it), sorted by name.
func nodeNames(v *lease.View) []string {
	seen := make(map[string]bool, len(v.IDs)+len(v.Nodes))
	var names []string
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for n := range v.IDs {
		add(n)
	}
	for n := range v.Nodes {
		add(n)
	}
	sort.Strings(names)
	return names
}

func rolesByNode(claims map[string]lease.Claim) map[string][]string {
	out := make(map[string][]string)
	for role, c := range claims {
		out[c.Node] = append(out[c.Node], role)
	}
	for _, roles := range out {
		sort.Strings(roles)
	}
	return out
}

func nodeStatus(ctx context.Context, st *lease.Store, v *lease.View, name string, roles []string) NodeStatus {
	ns := NodeStatus{
		Name:      name,
		ID:        v.IDs[name],
		State:     StateDown,
		Roles:     roles,
		Qualified: QualifiedNone,
		Cordoned:  v.Cordoned[name],
	}
	if ns.Roles == nil {
		ns.Roles = []string{}
	}
	if q, ok := v.Qualified[name]; ok {
		ns.Qualified = QualifiedFailed
		if q.Passed {
			ns.Qualified = QualifiedPassed
		}
	}
	rec, live := v.Nodes[name]
	if !live {
		return ns
	}
	if ns.ID == 0 {
		ns.ID = rec.ID
	}
	ns.State, ns.Since, ns.Version, ns.Health = rec.State, rec.Since, rec.Version, rec.Health
	if st != nil && rec.Lease != 0 && ctx.Err() == nil {
		if left, err := st.LeaseTimeLeft(ctx, clientv3.LeaseID(rec.Lease)); err == nil {
			ns.LeaseLeft = left
		}
	}
	return ns
}

// roleStatuses lists spec roles in spec order, then held roles missing from the spec.
func roleStatuses(v *lease.View) (roles []RoleStatus, unheld []string) {
	roles = []RoleStatus{}
	inSpec := make(map[string]bool)
	if v.Spec != nil {
		for _, rs := range v.Spec.Roles {
			inSpec[rs.Name] = true
			r := roleStatus(v, rs.Name)
			if rs.VIP != nil {
				r.VIP = rs.VIP.Address
			}
			if r.Holder == "" {
				unheld = append(unheld, rs.Name)
			}
			roles = append(roles, r)
		}
	}
	var orphans []string
	for name := range v.Claims {
		if !inSpec[name] {
			orphans = append(orphans, name)
		}
	}
	sort.Strings(orphans)
	for _, name := range orphans {
		roles = append(roles, roleStatus(v, name))
	}
	return roles, unheld
}

func roleStatus(v *lease.View, name string) RoleStatus {
	r := RoleStatus{Name: name, Target: v.Targets[name]}
	if c, ok := v.Claims[name]; ok {
		r.Holder, r.Token = c.Node, c.Token
	}
	if last, ok := v.Last[name]; ok {
		r.LastHolder, r.LastClean = last.Node, last.Clean
		// The last record describes the current tenure only once the holder marked it.
		if r.Holder != "" && last.Node == r.Holder && last.Token == r.Token {
			r.Since = last.Time
		}
	}
	return r
}

// Events returns the cluster's newest limit events (all roles), oldest first, for the
// health endpoint's status page; it fails until the agent has reached etcd once.
func (a *Agent) Events(ctx context.Context, limit int) ([]lease.Event, error) {
	a.mu.Lock()
	st := a.store
	a.mu.Unlock()
	if st == nil {
		return nil, ErrNotConnected
	}
	return st.Events(ctx, "", limit)
}
