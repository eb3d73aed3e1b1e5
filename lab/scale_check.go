package lab

// The scale bench's end-of-run invariant check (scale.go): the fencing-token chains of
// the claim log, and etcd, the log and the agents agreeing on every role's holder.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/understudy-ha/understudy/lease"
)

// waitConsistent runs the invariant check until it passes: a claim or a node record may
// be in flight when it starts. The check is about outcomes, never about timing.
func (l *claimLog) waitConsistent(ctx context.Context, f *scaleFarm) error {
	if err := l.checkChains(); err != nil {
		return err
	}
	tick := time.NewTicker(scalePoll)
	defer tick.Stop()
	var last error // the last violation seen, rather than the read the deadline cut short
	for {
		err := f.check(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrScaleCheck, last)
		case <-tick.C:
		}
	}
}

// checkChains checks what the fencing tokens promise, per role in token order: tokens
// are distinct; each holder's TryClaim read, as the last holder to fence, a node that
// really won the role with a smaller token, and never one older than the holder marked
// before it. (The last holder may be newer than the previous marked claim: a MarkHolder
// can commit although its caller saw an error.)
func (l *claimLog) checkChains() error {
	l.mu.Lock()
	claims, won := slices.Clone(l.claims), maps.Clone(l.won)
	l.mu.Unlock()
	seen := map[int64]string{}
	byRole := map[string][]scaleClaim{}
	for _, c := range claims {
		if other, dup := seen[c.Token]; dup {
			return fmt.Errorf("%w: token %d was given to %s and to %s", ErrScaleCheck, c.Token, other, c.Role)
		}
		seen[c.Token] = c.Role
		byRole[c.Role] = append(byRole[c.Role], c)
	}
	for role, cs := range byRole {
		slices.SortFunc(cs, func(a, b scaleClaim) int { return cmp.Compare(a.Token, b.Token) })
		var marked scaleClaim // the previous claim that was marked
		for _, c := range cs {
			var bad string
			switch {
			case c.PrevNode == "" && marked.Token != 0:
				bad = "no last holder"
			case c.PrevNode == "":
			case c.PrevToken >= c.Token || won[wonKey{role, c.PrevToken}] != c.PrevNode:
				bad = "a last holder that never won the role with a smaller token"
			case c.PrevToken < marked.Token:
				bad = "a last holder older than the previous marked holder"
			}
			if bad != "" {
				return fmt.Errorf("%w: role %s: claim %d by %s read %s (%s/%d; previous marked %s/%d)", ErrScaleCheck,
					role, c.Token, c.Node, bad, dash(c.PrevNode), c.PrevToken, dash(marked.Node), marked.Token)
			}
			marked = c
		}
	}
	return nil
}

// check compares etcd with the claim log and the agents: every role has exactly one
// claim, held by the node the log last recorded, with a matching last-holder record; that
// node is live, publishes the role, and believes it holds it with that token; no agent
// believes it holds anything else.
func (f *scaleFarm) check(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	resp, err := f.e.cli.Get(gctx, f.st.Prefix(), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("lab: read %s: %w", f.st.Prefix(), err)
	}
	claims, last, nodes := map[string]lease.Claim{}, map[string]lease.LastHolder{}, map[string]lease.NodeRecord{}
	for _, kv := range resp.Kvs {
		rel := strings.TrimPrefix(string(kv.Key), f.st.Prefix())
		dir, name, _ := strings.Cut(rel, "/")
		switch {
		case dir == "nodes":
			err = decodeJSON(kv.Value, name, nodes)
		case dir == "roles" && strings.HasSuffix(name, "/claim"):
			role := strings.TrimSuffix(name, "/claim")
			claims[role] = lease.Claim{Role: role, Node: string(kv.Value), Token: kv.CreateRevision}
		case dir == "roles" && strings.HasSuffix(name, "/last"):
			err = decodeJSON(kv.Value, strings.TrimSuffix(name, "/last"), last)
		}
		if err != nil {
			return fmt.Errorf("lab: decode %s: %w", kv.Key, err)
		}
	}
	if len(nodes) != len(f.agents) || len(claims) != len(f.roles) {
		return fmt.Errorf("%d live node records for %d agents, %d claims for %d roles", len(nodes), len(f.agents), len(claims), len(f.roles))
	}
	for _, role := range f.roles {
		if err := f.checkRole(role, claims[role], last[role], nodes); err != nil {
			return err
		}
	}
	for _, a := range f.agents {
		if h := a.heldClaim(); h.Token != 0 && claims[h.Role].Token != h.Token {
			return fmt.Errorf("%s believes it holds %s with token %d; etcd has %s/%d", a.name, h.Role, h.Token,
				dash(claims[h.Role].Node), claims[h.Role].Token)
		}
	}
	return nil
}

func (f *scaleFarm) checkRole(role string, c lease.Claim, last lease.LastHolder, nodes map[string]lease.NodeRecord) error {
	rec, _ := f.rec.holder(role)
	a := f.byName[c.Node]
	switch {
	case c.Token == 0:
		return fmt.Errorf("role %s has no holder", role)
	case rec.Node != c.Node || rec.Token != c.Token:
		return fmt.Errorf("role %s: etcd has %s/%d, the last recorded claim is %s/%d", role, c.Node, c.Token, dash(rec.Node), rec.Token)
	case last.Node != c.Node || last.Token != c.Token:
		return fmt.Errorf("role %s: claim %s/%d but last holder %s/%d", role, c.Node, c.Token, dash(last.Node), last.Token)
	case !slices.Equal(nodes[c.Node].Roles, []string{role}):
		return fmt.Errorf("role %s: holder %s publishes roles %v", role, c.Node, nodes[c.Node].Roles)
	case a == nil || a.heldClaim().Token != c.Token:
		return fmt.Errorf("role %s: holder %s does not believe it holds token %d", role, c.Node, c.Token)
	}
	return nil
}

func decodeJSON[T any](b []byte, name string, m map[string]T) error {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	m[name] = v
	return nil
}
