package nemesis

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

func runTwoRoles(ctx context.Context, r *runner, c *Cycle, _ string) (expect, error) {
	cs, err := r.f.Status(ctx)
	if err != nil {
		return expect{}, err
	}
	roles := slices.Clone(r.roles)
	r.rng.Shuffle(len(roles), func(i, j int) { roles[i], roles[j] = roles[j], roles[i] })
	roles = roles[:2]
	var holders []string
	tokens := map[string]int64{}
	for _, role := range roles {
		rs, _ := lab.FindRole(cs, role)
		holders, tokens[role] = append(holders, rs.Holder), rs.Token
	}
	flt := c.fault(fmt.Sprintf("crash nodes %v (holding %v) at once", holders, roles))
	if err := both(holders, func(n string) error { _, err := r.f.Crash(ctx, n); return err }); err != nil {
		return expect{}, err
	}
	for _, role := range roles {
		if _, err := r.waitTakeover(ctx, role, tokens[role]); err != nil {
			return expect{}, err
		}
	}
	err = both(holders, func(n string) error { return r.f.Recover(ctx, n) })
	flt.Healed = time.Now()
	return failover(r, roles...), err
}

// both runs fn for every name concurrently and joins the errors.
func both(names []string, fn func(string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() { errs[i] = fn(n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func runTakeoverFail(ctx context.Context, r *runner, c *Cycle, variant string) (expect, error) {
	role, h, tok, err := r.pickHeld(ctx)
	if err != nil {
		return expect{}, err
	}
	if variant == "vip" {
		return r.foreignVIP(ctx, c, role, h, tok)
	}
	cs, err := r.f.Status(ctx)
	if err != nil {
		return expect{}, err
	}
	standbys := lab.NodesIn(cs, takeover.StateStandby)
	if len(standbys) < 2 {
		return expect{}, fmt.Errorf("need two standbys, have %v", standbys)
	}
	s := standbys[r.rng.IntN(len(standbys))]
	// The sabotaged standby is the role's only preferred node, so it tries first; the
	// others give it two TTLs (claim.go's placement) before they may.
	if err := r.applySpec(ctx, func(doc map[string]any) { setPreferred(doc, role, []string{s}) }); err != nil {
		return expect{}, err
	}
	if err := lab.Sleep(ctx, r.o.TTL); err != nil { // the agents see the new spec
		return expect{}, err
	}
	undo, err := r.sabotage(ctx, s, role, variant)
	if err != nil {
		return expect{}, err
	}
	flt := c.fault(fmt.Sprintf("%s: standby %s's %s fails; crash %s (holds %s)", role, s, variant, h, role))
	var errs []error
	if _, err := r.f.Crash(ctx, h); err != nil {
		errs = append(errs, err)
	}
	if _, err := r.waitEvent(ctx, role, func(ev lease.Event) bool {
		return ev.Kind == lease.EventTakeoverFailed && ev.Node == s && ev.Token > tok
	}); err != nil {
		errs = append(errs, fmt.Errorf("%s's failed takeover never recorded: %w", s, err))
	}
	if holder, err := r.waitTakeover(ctx, role, tok); err != nil {
		errs = append(errs, err)
	} else if holder == s {
		errs = append(errs, fmt.Errorf("%s took %s although its %s was sabotaged", s, role, variant))
	}
	errs = append(errs, undo(), r.f.Recover(ctx, h),
		r.applySpec(ctx, func(doc map[string]any) { setPreferred(doc, role, []string{h}) }),
		r.uncordonAll(ctx, c))
	flt.Healed = time.Now()
	ex := failover(r, role)
	ex.bound[role] += 2 * r.o.TTL // the preferred standby's chance
	return ex, errors.Join(errs...)
}

// sabotage makes node's next takeover of role fail at one step, inside the node's own
// mount namespace (its agent's), and returns how to undo it.
func (r *runner) sabotage(ctx context.Context, node, role, step string) (func() error, error) {
	pid := r.f.PID(node)
	if pid == 0 {
		return nil, fmt.Errorf("node %s not running", node)
	}
	rl, err := r.f.Role(role)
	if err != nil {
		return nil, err
	}
	in := func(args ...string) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		full := append([]string{"-t", fmt.Sprint(pid), "-m", "--"}, args...)
		if out, err := exec.CommandContext(cctx, "nsenter", full...).CombinedOutput(); err != nil {
			return fmt.Errorf("nemesis: nsenter %s: %w: %s", strings.Join(full, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	var target string
	switch step {
	case "mount": // a tmpfs over the mountpoints' directory, with a file where role's is
		target = filepath.Dir(rl.Mount)
		if err := in("mount", "-t", "tmpfs", "-o", "size=1m", "usl-sabotage", target); err != nil {
			return nil, err
		}
		if err := in("touch", rl.Mount); err != nil {
			return nil, errors.Join(err, in("umount", target))
		}
	case "exec": // the service's executable replaced by one that exits at once
		target = r.o.Binary
		if err := in("mount", "--bind", "/bin/false", target); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: sabotage step %q", ErrInvalidOption, step)
	}
	return func() error { return in("umount", target) }, nil
}

// uncordonAll lifts the cordon of every node that cordoned itself after failing
// takeovers (the product's answer to a node that keeps failing), as the operator would
// once the cause is fixed.
func (r *runner) uncordonAll(ctx context.Context, c *Cycle) error {
	cs, err := r.f.Status(ctx)
	if err != nil {
		return err
	}
	for _, n := range cs.Nodes {
		if n.Cordoned {
			c.fault(fmt.Sprintf("operator: node uncordon %s (it cordoned itself after failed takeovers)", n.Name)).Healed = time.Now()
			if _, err := r.f.CLI(ctx, "node", "uncordon", n.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// foreignVIP puts role's VIP on a foreign host (the client namespace) and crashes the
// holder: every standby must refuse the address while the foreign host has it.
func (r *runner) foreignVIP(ctx context.Context, c *Cycle, role, h string, tok int64) (expect, error) {
	rl, err := r.f.Role(role)
	if err != nil {
		return expect{}, err
	}
	client := r.f.Net().Client().NS
	d := r.between(3*time.Second, 5*time.Second)
	flt := c.fault(fmt.Sprintf("a foreign host (the client namespace) takes %s's VIP %s; crash %s; the foreign host leaves after the refusals + %s",
		role, rl.VIP, h, lease.CompactDuration(d)))
	ip := func(op string) error {
		out, err := exec.CommandContext(context.WithoutCancel(ctx), "ip", "-n", client, "addr", op, rl.VIP+"/24", "dev", "eth0").CombinedOutput()
		if err != nil {
			return fmt.Errorf("nemesis: ip addr %s %s in %s: %w: %s", op, rl.VIP, client, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := ip("add"); err != nil {
		return expect{}, err
	}
	var errs []error
	if _, err := r.f.Crash(ctx, h); err != nil {
		errs = append(errs, err)
	}
	if _, err := r.waitEvent(ctx, role, func(ev lease.Event) bool {
		return ev.Kind == lease.EventTakeoverFailed && ev.Token > tok
	}); err != nil {
		errs = append(errs, fmt.Errorf("no standby refused the foreign VIP: %w", err))
	}
	errs = append(errs, lab.Sleep(ctx, d))
	// While the foreign host has the address, no node may have added it (a standby's
	// claim may come and go: its takeover fails at the VIP step and rolls back).
	errs = append(errs, r.onlyForeign(ctx, role, rl.VIP, h))
	errs = append(errs, ip("del"))
	flt.Healed = time.Now()
	if _, err := r.waitTakeover(ctx, role, tok); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, r.f.Recover(ctx, h), r.uncordonAll(ctx, c))
	ex := failover(r, role)
	// Every standby that refused the address backs off (TTL << failures, their count
	// kept per node and role): the role is served when the first retry comes, allowed
	// here up to the backoff after a second failure.
	ex.bound[role] = flt.Healed.Sub(flt.At) + r.failoverBound() + 4*r.o.TTL
	return ex, errors.Join(errs...)
}

// onlyForeign checks that the client namespace alone answers ARP for vip and that no
// node but the crashed one (links down, its address left as it was) has it configured.
func (r *runner) onlyForeign(ctx context.Context, role, vip, crashed string) error {
	client := r.f.Net().Client()
	macs, err := arpAnswers(ctx, client.NS, vip)
	if err != nil {
		return err
	}
	// arping from the host that has the address gets no answer from itself; any
	// answer is another host's.
	if len(macs) > 0 {
		return fmt.Errorf("%s's VIP %s answered by %v while a foreign host has it", role, vip, macs)
	}
	for _, n := range r.nodes {
		if n == crashed {
			continue
		}
		st, err := readNodeState(ctx, r.f, n, r.roleOf)
		if err != nil {
			return err
		}
		if slices.Contains(st.VIPs, role) {
			return fmt.Errorf("node %s added %s's VIP %s while a foreign host has it", n, role, vip)
		}
	}
	return nil
}

func runRestart(ctx context.Context, r *runner, c *Cycle, _ string) (expect, error) {
	role, h, tok, err := r.pickHeld(ctx)
	if err != nil {
		return expect{}, err
	}
	flt := c.fault(fmt.Sprintf("kill -9 node %s's agent (holds %s) and start it again at once", h, role))
	if _, err := r.f.Kill(h); err != nil {
		return expect{}, err
	}
	st, err := readNodeState(ctx, r.f, h, r.roleOf)
	if err != nil {
		return expect{}, err
	}
	loops := len(lab.LoopsUnder(filepath.Join(r.f.Dir(), "nodes", h)))
	c.check("leftovers-present", len(st.VIPs) > 0, "before the restart node %s still had %s and %d LUN loop device(s)", h, st, loops)
	err = r.f.StartNode(ctx, h)
	flt.Healed = time.Now()
	if err != nil {
		return expect{}, err
	}
	_, err = r.waitTakeover(ctx, role, tok)
	return failover(r, role), err
}

func runFlap(ctx context.Context, r *runner, c *Cycle, _ string) (expect, error) {
	role, h, tok, err := r.pickHeld(ctx)
	if err != nil {
		return expect{}, err
	}
	flt := c.fault(fmt.Sprintf("node %s (holds %s) crashes, comes back and crashes again, three times", h, role))
	if _, err := r.f.Crash(ctx, h); err != nil {
		return expect{}, err
	}
	if _, err := r.waitTakeover(ctx, role, tok); err != nil {
		return expect{}, err
	}
	for range 3 {
		if err := r.f.Recover(ctx, h); err != nil {
			return expect{}, err
		}
		if _, err := r.waitFor(ctx, h+" back", func(cs takeover.ClusterStatus) bool {
			st := lab.StateOf(cs, h)
			return st == takeover.StateStandby || st == takeover.StateProbation
		}); err != nil {
			return expect{}, err
		}
		if err := lab.Sleep(ctx, r.between(0, r.o.TTL)); err != nil {
			return expect{}, err
		}
		if _, err := r.f.Crash(ctx, h); err != nil {
			return expect{}, err
		}
		if err := lab.Sleep(ctx, r.between(r.o.TTL/2, r.o.TTL)); err != nil {
			return expect{}, err
		}
	}
	err = r.f.Recover(ctx, h)
	flt.Healed = time.Now()
	return failover(r, role), err
}
