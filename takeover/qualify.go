package takeover

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// checker is a resource that can prove, without disturbing the current holder, that this
// node could run it (FIG. 7: "confirm E will work").
type checker interface {
	Check(ctx context.Context) error
}

// qualifyTimeout bounds one whole qualification run.
const qualifyTimeout = 30 * time.Second

// needsQualification: never qualified, failed, or qualified against an older spec while
// not holding anything (an active node keeps its roles; it re-qualifies when free).
func (l *loop) needsQualification(v *lease.View) bool {
	if v.Spec == nil {
		return false
	}
	q, ok := v.Qualified[l.a.cfg.Node]
	if !ok {
		return true
	}
	return q.SpecRev != v.SpecRev && len(l.a.held) == 0
}

// qualified reports whether the node passed a current qualification for at least one
// role (a stale one counts only while the node still holds roles).
func (l *loop) qualified(v *lease.View) bool {
	q, ok := v.Qualified[l.a.cfg.Node]
	return ok && q.Passed && !l.needsQualification(v)
}

// qualifiedFor reports whether the node passed every check for the role.
func (l *loop) qualifiedFor(v *lease.View, role string) bool {
	q, ok := v.Qualified[l.a.cfg.Node]
	return ok && passedRole(q, role)
}

// qualify runs every role's checks, stores the result and records an event. The node is
// qualified (may stand by) when it passes for at least one role; it only claims roles it
// passed for.
func (l *loop) qualify(ctx context.Context, v *lease.View) {
	a := l.a
	if v.Spec == nil {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, qualifyTimeout)
	defer cancel()
	t := time.Now()
	q := lease.Qualification{SpecRev: v.SpecRev, Time: time.Now()}
	for _, r := range v.Spec.Roles {
		q.Checks = append(q.Checks, a.checkRole(qctx, r)...)
	}
	compareIdentities(q.Checks, a.cfg.Node, v)
	for _, r := range v.Spec.Roles {
		if passedRole(q, r.Name) {
			q.Passed = true
		}
	}
	pctx, pcancel := a.etcdCtx(ctx)
	err := l.st.PutQualification(pctx, a.cfg.Node, q)
	pcancel()
	if err != nil {
		a.log.Warn("store qualification", zap.Error(err))
		return
	}
	a.log.Info("qualification", zap.Bool("passed", q.Passed), zap.Any("checks", q.Checks), zap.Duration("duration", time.Since(t)))
	detail := "failed"
	if q.Passed {
		detail = "passed"
	}
	a.appendEvent(ctx, l.st, lease.Event{Node: a.cfg.Node, Kind: EventQualify, Detail: detail,
		Total: time.Since(t)})
}

// passedRole: the role has at least one check and all of them passed.
func passedRole(q lease.Qualification, role string) bool {
	found := false
	for _, c := range q.Checks {
		if c.Role == role {
			if !c.Passed {
				return false
			}
			found = true
		}
	}
	return found
}

// checkRole runs the qualification checks of one role's resources.
func (a *Agent) checkRole(ctx context.Context, r lease.RoleSpec) []lease.Check {
	chain, _, err := a.build(r)
	if err != nil {
		return []lease.Check{{Role: r.Name, Name: "resources", Passed: false, Detail: err.Error()}}
	}
	var checks []lease.Check
	if f, err := a.fencerFor(r); err == nil {
		if ck, ok := f.(interface {
			Check(context.Context) (string, error)
		}); ok {
			c := lease.Check{Role: r.Name, Name: "fence", Passed: true}
			c.Detail, err = ck.Check(ctx)
			if err != nil {
				c.Passed, c.Detail = false, err.Error()
			}
			checks = append(checks, c)
		}
	}
	for _, res := range chain.res {
		c := lease.Check{Role: r.Name, Name: res.Name(), Passed: true, Detail: "ok"}
		if ck, ok := res.(checker); ok {
			if err := ck.Check(ctx); err != nil {
				c.Passed, c.Detail = false, err.Error()
			}
		}
		checks = append(checks, c)
	}
	if len(checks) == 0 {
		checks = append(checks, lease.Check{Role: r.Name, Name: "resources", Passed: true, Detail: "role has no resources"})
	}
	return checks
}

// compareIdentities fails a fence check whose LUN identities differ from what another
// node, qualified against the same spec, saw for the same role: fencing through a path to
// another LUN would fence nothing.
func compareIdentities(checks []lease.Check, me string, v *lease.View) {
	for i, c := range checks {
		if !c.Passed || !strings.HasPrefix(c.Detail, identityPrefix) {
			continue
		}
		for node, oq := range v.Qualified {
			if node == me || oq.SpecRev != v.SpecRev {
				continue
			}
			for _, oc := range oq.Checks {
				if oc.Role == c.Role && oc.Name == c.Name && oc.Passed &&
					strings.HasPrefix(oc.Detail, identityPrefix) && oc.Detail != c.Detail {
					checks[i].Passed = false
					checks[i].Detail = fmt.Sprintf("device %s differs from node %s's %s: not the same LUN",
						c.Detail, node, oc.Detail)
				}
			}
		}
	}
}
