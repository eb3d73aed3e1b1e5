package takeover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence"
	"github.com/understudy-ha/understudy/fence/iscsi"
)

// san opens and keeps this node's paths to shared LUNs for the agent's whole life.
//
// One long-lived transport per path matters for safety, not only speed: a target keys
// persistent-reservation registrations on the I_T nexus, and tgtd even on the session
// (its TSIH), so the session that registered the node's key must be the one its
// fencing, watchdog and storage I/O use. Storage given as iscsi:// must therefore name
// the same path string as the role's fence device. The iSCSI initiator never re-registers by itself
// after a reconnect; the agent re-registers on (re)join, when it is a member in good
// standing (see join).
//
// Safe for concurrent use.
type san struct {
	cluster, node string
	nodeID        uint32
	log           *zap.Logger

	mu      sync.Mutex
	paths   map[string][]fence.Transport // guarded by mu; by path string (dm-multipath: several)
	devices map[string]*fence.Device     // guarded by mu; by joined paths, so a device's learnt quirks (no PREEMPT AND ABORT) persist
	isids   map[string]uint8             // guarded by mu; sessions opened per target IQN
}

func newSAN(cluster, node string, nodeID uint32, log *zap.Logger) *san {
	return &san{cluster: cluster, node: node, nodeID: nodeID, log: log, paths: map[string][]fence.Transport{},
		devices: map[string]*fence.Device{}, isids: map[string]uint8{}}
}

// initiatorName is this node's iSCSI name; stable, so arrays can be configured for it.
func initiatorName(cluster, node string) string {
	return fmt.Sprintf("iqn.2026-11.dev.understudy:%s.%s", cluster, node)
}

// device returns the fence.Device for one LUN given by its paths (iscsi:// URLs or /dev
// nodes; a dm-multipath /dev node expands to every path below it).
func (s *san) device(ctx context.Context, paths []string) (*fence.Device, error) {
	name := strings.Join(paths, ",")
	s.mu.Lock()
	d, ok := s.devices[name]
	s.mu.Unlock()
	if ok {
		return d, nil
	}
	// The name appears in fence errors, logs and events: never with a CHAP secret.
	d = &fence.Device{Name: shownPaths(paths), Log: s.log}
	for _, p := range paths {
		ts, err := s.open(ctx, p)
		if err != nil {
			return nil, err
		}
		d.Paths = append(d.Paths, ts...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.devices[name]; ok {
		return prev, nil
	}
	s.devices[name] = d
	return d, nil
}

func (s *san) open(ctx context.Context, path string) ([]fence.Transport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts, ok := s.paths[path]; ok {
		return ts, nil
	}
	if !strings.HasPrefix(path, "iscsi://") {
		ts, err := fence.OpenPaths(path) // SG_IO, dm-multipath expanded to its paths
		if err != nil {
			return nil, fmt.Errorf("takeover: open %s: %w", path, err)
		}
		s.paths[path] = ts
		return ts, nil
	}
	t, err := iscsi.ParseURL(path)
	if err != nil {
		return nil, fmt.Errorf("takeover: %w", err)
	}
	// Every session to one target needs its own ISID: two sessions with the same
	// initiator port (name + ISID) reinstate each other, and the second login would end
	// the first (two paths to one LUN, or two LUNs of one target). The node re-registers
	// its key on every (re)join, so the ISID need not be stable across restarts.
	idx := s.isids[t.IQN]
	s.isids[t.IQN]++
	cfg := iscsi.Config{InitiatorName: initiatorName(s.cluster, s.node),
		ISID: iscsi.ISIDFromNodeIDIndex(s.nodeID, idx), Logger: s.log}
	sess, err := iscsi.Dial(ctx, t, cfg)
	if err != nil {
		return nil, fmt.Errorf("takeover: %w", err)
	}
	s.paths[path] = []fence.Transport{sess}
	return s.paths[path], nil
}

// session returns the open iSCSI session for an iscsi:// path (storage uses it for I/O).
func (s *san) session(ctx context.Context, path string) (*iscsi.Session, error) {
	ts, err := s.open(ctx, path)
	if err != nil {
		return nil, err
	}
	sess, ok := ts[0].(*iscsi.Session)
	if !ok {
		return nil, fmt.Errorf("takeover: %s is not an iSCSI path", shownPath(path))
	}
	return sess, nil
}

// Close logs out of every iSCSI session and closes every SG_IO handle.
func (s *san) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for p, ts := range s.paths {
		for _, t := range ts {
			var err error
			switch c := t.(type) {
			case *iscsi.Session:
				err = c.Close(ctx)
			case interface{ Close() error }:
				err = c.Close()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("takeover: close %s: %w", shownPath(p), err))
			}
		}
		delete(s.paths, p)
	}
	clear(s.devices)
	clear(s.isids)
	return errors.Join(errs...)
}

// shownPath is a device path as errors, logs and events may show it: an iscsi:// URL's
// CHAP secret replaced (iscsi.Target.String), or, for a URL that does not parse, only
// its scheme (the parse error, which names the problem, is reported where it is used).
func shownPath(p string) string {
	if !strings.HasPrefix(p, "iscsi://") {
		return p
	}
	t, err := iscsi.ParseURL(p)
	if err != nil {
		return "iscsi://(invalid URL)"
	}
	return t.String()
}

// shownPaths joins shownPath of each path with ",".
func shownPaths(paths []string) string {
	shown := make([]string, len(paths))
	for i, p := range paths {
		shown[i] = shownPath(p)
	}
	return strings.Join(shown, ",")
}
