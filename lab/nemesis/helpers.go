package nemesis

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// pickHeld chooses one of the roles at random and returns it with its holder and token.
func (r *runner) pickHeld(ctx context.Context) (role, holder string, token int64, err error) {
	cs, err := r.f.Status(ctx)
	if err != nil {
		return "", "", 0, err
	}
	role = r.roles[r.rng.IntN(len(r.roles))]
	rs, _ := lab.FindRole(cs, role)
	if rs.Holder == "" {
		return "", "", 0, fmt.Errorf("nemesis: %s unheld before the fault", role)
	}
	return role, rs.Holder, rs.Token, nil
}

// waitTakeover waits until role is held under a token newer than tok and returns the
// holder.
func (r *runner) waitTakeover(ctx context.Context, role string, tok int64) (string, error) {
	cs, err := r.waitFor(ctx, role+" taken over", func(cs takeover.ClusterStatus) bool {
		rs, _ := lab.FindRole(cs, role)
		return rs.Holder != "" && rs.Token > tok && lab.Holds(cs, rs.Holder, role)
	})
	if err != nil {
		return "", err
	}
	h := lab.Holder(cs, role)
	r.say("   %s now held by %s", role, h)
	return h, nil
}

// waitFor is Farm.WaitFor bounded by settleTimeout.
func (r *runner) waitFor(ctx context.Context, desc string, cond func(takeover.ClusterStatus) bool) (takeover.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	return r.f.WaitFor(ctx, desc, cond)
}

// waitEvent is Farm.WaitEvent bounded by settleTimeout.
func (r *runner) waitEvent(ctx context.Context, role string, match func(lease.Event) bool) (lease.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	return r.f.WaitEvent(ctx, role, match)
}

// between is a random duration in [lo, hi).
func (r *runner) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)))
}

// etcdAddrs are the etcd members' IP addresses.
func (r *runner) etcdAddrs() ([]string, error) {
	var addrs []string
	for _, ep := range r.f.Endpoints() {
		u, err := url.Parse(ep)
		if err != nil {
			return nil, fmt.Errorf("nemesis: etcd endpoint %q: %w", ep, err)
		}
		addrs = append(addrs, u.Hostname())
	}
	return addrs, nil
}

// applySpec applies the lab's spec changed by edit (a YAML document as a map).
func (r *runner) applySpec(ctx context.Context, edit func(doc map[string]any)) error {
	text, err := r.f.SpecYAML(1)
	if err != nil {
		return err
	}
	if r.spec != nil {
		text = r.spec
	}
	var doc map[string]any
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return fmt.Errorf("nemesis: decode spec: %w", err)
	}
	edit(doc)
	out, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("nemesis: encode spec: %w", err)
	}
	if err := r.f.Apply(ctx, out); err != nil {
		return err
	}
	r.spec = out
	return nil
}

// setPreferred sets role's preferred nodes in a spec document.
func setPreferred(doc map[string]any, role string, nodes []string) {
	roles, _ := doc["roles"].([]any)
	for _, x := range roles {
		if m, ok := x.(map[string]any); ok && m["name"] == role {
			m["preferred_nodes"] = nodes
		}
	}
}
