package takeover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence"
	"github.com/understudy-ha/understudy/lease"
)

// fencer is a role's fencing method as the agent uses it.
type fencer interface {
	// Join makes this node a registrant of the role's storage (unfence). The agent calls
	// it on (re)join and before each takeover: only a member in good standing with a
	// live session registers, so a fenced node never undoes its own fence by itself.
	Join(ctx context.Context) error
	// Fence cuts the victim off and verifies it. An unverified fence is an error.
	Fence(ctx context.Context, victim lease.LastHolder) error
	// Watch reports once when this node finds itself fenced while holding the role; the
	// channel closes when ctx ends. nil when the method cannot tell.
	Watch(ctx context.Context) <-chan error
}

// watchInterval is how often a holder reads its own reservation key.
const watchInterval = time.Second

// fencerFor builds the role's fencing method. Roles without fencing get noFence, which
// lets a takeover proceed (with a warning) when the last holder died uncleanly.
func (a *Agent) fencerFor(r lease.RoleSpec) (fencer, error) {
	if r.Fence == nil || r.Fence.Method == "" || r.Fence.Method == lease.FenceNone {
		return noFence{log: a.log.With(zap.String("role", r.Name))}, nil
	}
	switch r.Fence.Method {
	case lease.FenceSCSI:
		self, err := fence.NewKey(a.cfg.Cluster, a.id)
		if err != nil {
			return nil, fmt.Errorf("takeover: fence key: %w", err)
		}
		return &scsiFencer{san: a.san, devices: r.Fence.Devices, self: self, cluster: a.cfg.Cluster,
			log: a.log.With(zap.String("role", r.Name))}, nil
	case lease.FenceAgent:
		fa := r.Fence.Agent
		return &agentFencer{agent: &fence.Agent{Path: fa.Path, Args: fa.Args, Timeout: fa.Timeout.Std(),
			Log: a.log.With(zap.String("role", r.Name))}, plugs: fa.Plugs}, nil
	}
	return nil, fmt.Errorf("takeover: role %q: fence.method %q: want none, scsi or agent", r.Name, r.Fence.Method)
}

type noFence struct{ log *zap.Logger }

func (noFence) Join(context.Context) error { return nil }

func (f noFence) Fence(_ context.Context, victim lease.LastHolder) error {
	f.log.Warn("previous holder released uncleanly but the role has no fencing; proceeding",
		zap.String("last", victim.Node))
	return nil
}

func (noFence) Watch(context.Context) <-chan error { return nil }

// scsiFencer fences with SCSI-3 persistent reservations on every path of every LUN.
type scsiFencer struct {
	san     *san
	devices [][]string
	self    fence.Key
	cluster string
	log     *zap.Logger
}

func (f *scsiFencer) each(ctx context.Context, op func(d *fence.Device) error) error {
	var errs []error
	for _, paths := range f.devices {
		d, err := f.san.device(ctx, paths)
		if err == nil {
			err = op(d)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (f *scsiFencer) Join(ctx context.Context) error {
	return f.each(ctx, func(d *fence.Device) error { return d.Unfence(ctx, f.self) })
}

func (f *scsiFencer) Fence(ctx context.Context, victim lease.LastHolder) error {
	key, err := fence.NewKey(f.cluster, victim.NodeID)
	if err != nil {
		return fmt.Errorf("takeover: fence key of %s: %w", victim.Node, err)
	}
	return f.each(ctx, func(d *fence.Device) error { return d.Fence(ctx, f.self, key) })
}

// Watch runs a fence watchdog per LUN and forwards the first report.
func (f *scsiFencer) Watch(ctx context.Context) <-chan error {
	out := make(chan error, 1)
	var chans []<-chan error
	for _, paths := range f.devices {
		d, err := f.san.device(ctx, paths)
		if err != nil {
			out <- err
			close(out)
			return out
		}
		w := &fence.Watchdog{Device: d, Key: f.self, Interval: watchInterval, Log: f.log}
		chans = append(chans, w.Run(ctx))
	}
	go func() {
		defer close(out)
		merged := merge(chans)
		for err := range merged {
			select {
			case out <- err:
			default: // one report is enough; keep draining until every watchdog exits
			}
		}
	}()
	return out
}

// merge forwards every value of chans to one channel, closed when all of them are.
func merge(chans []<-chan error) <-chan error {
	out := make(chan error, len(chans))
	done := make(chan struct{})
	for _, c := range chans {
		go func() {
			for err := range c {
				out <- err
			}
			done <- struct{}{}
		}()
	}
	go func() {
		for range chans {
			<-done
		}
		close(out)
	}()
	return out
}

// agentFencer powers the victim off through a fence-agents program and verifies it.
type agentFencer struct {
	agent *fence.Agent
	plugs map[string]string // node -> plug; default the node name
}

func (f *agentFencer) Join(context.Context) error { return nil }

func (f *agentFencer) Fence(ctx context.Context, victim lease.LastHolder) error {
	plug := victim.Node
	if p, ok := f.plugs[victim.Node]; ok {
		plug = p
	}
	return f.agent.Off(ctx, plug)
}

func (f *agentFencer) Watch(context.Context) <-chan error { return nil }

// identityPrefix marks a fence check's detail as the LUN identities, which qualification
// compares across nodes.
const identityPrefix = "identity "

// Check is the fencing part of qualification: the node can register its key on every
// path of every LUN, and all paths of a LUN report the same device identity (VPD 0x83),
// which is returned so nodes can be compared.
func (f *scsiFencer) Check(ctx context.Context) (string, error) {
	var ids []string
	err := f.each(ctx, func(d *fence.Device) error {
		id, err := d.Identity(ctx)
		if err != nil {
			return err
		}
		ids = append(ids, id)
		return d.Unfence(ctx, f.self)
	})
	return identityPrefix + strings.Join(ids, ","), err
}

// Check: the fence agent program exists and is executable.
func (f *agentFencer) Check(context.Context) (string, error) {
	if _, err := resolveCommand("fence.agent.path", []string{f.agent.Path}); err != nil {
		return "", err
	}
	return f.agent.Path, nil
}
