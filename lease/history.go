package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Event kinds written by the agent (the list is open: readers must accept others).
const (
	EventTakeover       = "takeover"
	EventTakeoverFailed = "takeover-failed"
	EventRelease        = "release"
	EventDemote         = "demote"
	EventFenced         = "fenced"
	EventJoin           = "join"
	EventQualify        = "qualify"
)

// Step is one timed step of a takeover or stop.
type Step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
	Err      string        `json:"error,omitempty"`
}

// Event is one entry of the failover timeline, stored at events/<%020d unixnano>-<node>.
type Event struct {
	Key    string        `json:"-"`    // etcd key, filled by Events
	Time   time.Time     `json:"time"` // wall clock, display and ordering of the history
	Role   string        `json:"role,omitempty"`
	Node   string        `json:"node"`
	Kind   string        `json:"kind"` // takeover|takeover-failed|release|demote|fenced|join|qualify|...
	Token  int64         `json:"token,omitempty"`
	From   string        `json:"from,omitempty"` // previous holder
	Steps  []Step        `json:"steps,omitempty"`
	Total  time.Duration `json:"total_ns,omitempty"`
	Detail string        `json:"detail,omitempty"`
}

// String renders the step for a timeline: "fence=4.1ms"; a failed step ends in "!".
func (s Step) String() string {
	out := s.Name + "=" + CompactDuration(s.Duration)
	if s.Err != "" {
		out += "!"
	}
	return out
}

// FormatSteps renders steps space-separated ("detect=3ms fence=81µs exec=104ms"), "-"
// for none: the one timeline format of the CLI and the demo.
func FormatSteps(steps []Step) string {
	if len(steps) == 0 {
		return "-"
	}
	parts := make([]string, len(steps))
	for i, st := range steps {
		parts[i] = st.String()
	}
	return strings.Join(parts, " ")
}

// CompactDuration prints a duration as the timeline does: "850µs", "12ms", "1.23s".
func CompactDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// AppendEvent stores ev (a zero Time is set to now; Node may be empty for events not
// about a node) and trims the history to the newest events (1000). A failed trim is
// logged, not returned: the event itself was stored.
func (s *Store) AppendEvent(ctx context.Context, ev Event) error {
	if ev.Node != "" {
		if err := CheckNodeName(ev.Node); err != nil {
			return fmt.Errorf("lease: append event: %w", err)
		}
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("lease: encode %s event: %w", ev.Kind, err)
	}
	// Two events of one node in the same nanosecond must not overwrite each other: bump
	// the key (not the event's Time) until it is free.
	for n := ev.Time.UnixNano(); ; n++ {
		key := s.key(dirEvents) + fmt.Sprintf("%020d-%s", n, ev.Node)
		ok, err := s.put(ctx, key, string(b), true)
		if err != nil {
			return fmt.Errorf("lease: append %s event of node %q: %w", ev.Kind, ev.Node, err)
		}
		if ok {
			break
		}
	}
	if err := s.trimEvents(ctx); err != nil {
		s.log.Warn("could not trim the event history", zap.Error(err))
	}
	return nil
}

// trimEvents deletes the oldest events beyond maxEvents: a count, a read of the excess
// keys at the count's revision (so concurrent trimmers agree on the cutoff), and one
// range delete up to the cutoff key.
func (s *Store) trimEvents(ctx context.Context) error {
	dir := s.key(dirEvents)
	count, err := s.cli.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("lease: count events: %w", err)
	}
	excess := count.Count - int64(s.maxEvents)
	if excess <= 0 {
		return nil
	}
	old, err := s.cli.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
		clientv3.WithLimit(excess), clientv3.WithRev(count.Header.Revision))
	if err != nil {
		return fmt.Errorf("lease: read the %d oldest events: %w", excess, err)
	}
	if len(old.Kvs) == 0 {
		return nil
	}
	cutoff := string(old.Kvs[len(old.Kvs)-1].Key)
	if _, err := s.cli.Delete(ctx, dir, clientv3.WithRange(cutoff+"\x00")); err != nil {
		return fmt.Errorf("lease: delete events up to %s: %w", cutoff, err)
	}
	return nil
}

// Events returns the newest limit events (all kept events if limit <= 0) of role (all
// roles if role is ""), oldest first. Undecodable entries are logged and skipped.
func (s *Store) Events(ctx context.Context, role string, limit int) ([]Event, error) {
	if role != "" {
		if err := CheckRoleName(role); err != nil {
			return nil, fmt.Errorf("lease: events: %w", err)
		}
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if role == "" && limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.cli.Get(ctx, s.key(dirEvents), opts...)
	if err != nil {
		return nil, fmt.Errorf("lease: read events of role %q: %w", role, err)
	}
	var evs []Event
	for _, kv := range resp.Kvs {
		var ev Event
		if err := json.Unmarshal(kv.Value, &ev); err != nil {
			s.log.Warn("skipping undecodable event", zap.ByteString("key", kv.Key), zap.Error(err))
			continue
		}
		if role != "" && ev.Role != role {
			continue
		}
		ev.Key = string(kv.Key)
		evs = append(evs, ev)
		if limit > 0 && len(evs) == limit {
			break
		}
	}
	slices.Reverse(evs)
	return evs, nil
}
