package lab_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
)

func TestLongestGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(startMs, endMs int) lab.Sample { return lab.Sample{Start: at(startMs), End: at(endMs), OK: true} }
	bad := func(startMs, endMs int) lab.Sample { return lab.Sample{Start: at(startMs), End: at(endMs)} }
	tests := []struct {
		name     string
		samples  []lab.Sample
		from, to int
		gap      time.Duration
		gapFrom  int
		gapUntil int
	}{
		{"no answers: the whole window", []lab.Sample{bad(0, 100)}, 0, 500, 500 * time.Millisecond, 0, 500},
		{"steady", []lab.Sample{ok(0, 1), ok(10, 11), ok(20, 21)}, 0, 30, 10 * time.Millisecond, 1, 11},
		{"outage in the middle", []lab.Sample{ok(0, 1), bad(10, 110), bad(20, 120), ok(300, 301), ok(310, 311)}, 0, 320,
			300 * time.Millisecond, 1, 301},
		{"answers out of order count by arrival", []lab.Sample{ok(0, 50), ok(10, 11), ok(20, 21)}, 0, 60,
			29 * time.Millisecond, 21, 50},
		{"outside the window ignored", []lab.Sample{ok(0, 5), ok(100, 101)}, 50, 150, 51 * time.Millisecond, 50, 101},
		{"tail after the last answer", []lab.Sample{ok(0, 1)}, 0, 400, 399 * time.Millisecond, 1, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gap, start, end := lab.LongestGap(tc.samples, at(tc.from), at(tc.to))
			if gap != tc.gap || !start.Equal(at(tc.gapFrom)) || !end.Equal(at(tc.gapUntil)) {
				t.Errorf("LongestGap = %s [%s, %s], want %s [%dms, %dms]", gap, start.Sub(t0), end.Sub(t0),
					tc.gap, tc.gapFrom, tc.gapUntil)
			}
		})
	}
}

// TestPollerKeepsAskingDuringAnOutage: a request that hangs does not stop the next
// ones from starting, so answers after an outage are seen at once.
func TestPollerKeepsAskingDuringAnOutage(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done() // the first request hangs until the client gives up
			return
		}
		_ = json.NewEncoder(w).Encode(lab.Reply{Node: "n1"})
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := lab.StartPoller(ctx, lab.PollerOptions{URL: srv.URL + "/", Interval: 5 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var samples []lab.Sample
	for {
		if samples = p.Samples(); len(samples) > 0 && !samples[0].OK {
			break // the hung request timed out: everything after it is in
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the first request never timed out: %d samples", len(samples))
		case <-tick.C:
		}
	}
	samples = p.Stop()
	first := samples[0]
	answered := 0
	for _, s := range samples[1:] {
		if s.OK && s.Reply.Node == "n1" && s.End.Before(first.End) {
			answered++
		}
	}
	if answered < 10 {
		t.Fatalf("%d answers arrived while the first request hung, want at least 10 (samples: %d)", answered, len(samples))
	}
}
