package lab_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/lab"
)

// scaleTestTimeout bounds the whole small scale bench: two runs of a few seconds each.
const scaleTestTimeout = 2 * time.Minute

// TestScale runs the scale bench small (20 nodes, 5 roles, one trial, a 4-node baseline)
// and checks outcomes only: BenchScale itself fails with ErrScaleCheck unless every role
// ends with exactly one holder that agrees with etcd and the tokens of each role form a
// chain; here every reported figure must be present. No figure is compared with a time.
func TestScale(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), scaleTestTimeout)
	defer cancel()
	opts := lab.ScaleOptions{
		Binary: binary, Nodes: 20, Roles: 5, BaselineNodes: 4, Trials: 1,
		TTL:     testTTL, // 2 s: the race detector shares 2 cores with the members
		Window:  2 * time.Second,
		Timeout: time.Minute,
		Log:     zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
	}
	rep, err := lab.BenchScale(ctx, opts)
	if err != nil {
		t.Fatalf("BenchScale: %v", err)
	}
	if rep.EtcdMembers != 3 || rep.CPUs < 1 || rep.Note == "" {
		t.Errorf("report header = %d members, %d CPUs, note %q", rep.EtcdMembers, rep.CPUs, rep.Note)
	}
	want := []struct{ nodes, roles int }{{20, 5}, {4, 1}}
	if len(rep.Runs) != len(want) {
		t.Fatalf("got %d runs, want %d", len(rep.Runs), len(want))
	}
	for i, r := range rep.Runs {
		if r.Nodes != want[i].nodes || r.Roles != want[i].roles {
			t.Errorf("run %d: %d nodes, %d roles; want %d, %d", i, r.Nodes, r.Roles, want[i].nodes, want[i].roles)
		}
		checkScaleRun(t, r, opts.Trials)
	}
}

// checkScaleRun checks that every figure of a run is present and positive.
func checkScaleRun(t *testing.T, r lab.ScaleRun, trials int) {
	t.Helper()
	positive := map[string]float64{
		"clients":                 float64(r.Clients),
		"id allocation":           r.IDAllocation.Seconds(),
		"all joined":              r.Joined.Seconds(),
		"all claimed":             r.Claimed.Seconds(),
		"claims per second":       r.ClaimsPerSecond,
		"join etcd CPU":           r.Join.EtcdCPUSeconds,
		"claim duration":          r.Claim.Duration.Seconds(),
		"steady window":           r.Steady.Duration.Seconds(),
		"steady etcd CPU":         r.Steady.EtcdCPUSeconds,
		"steady keepalives":       r.Steady.Traffic.Keepalives,
		"steady renewals":         r.Steady.Traffic.Renewed,
		"steady client bytes in":  r.Steady.Traffic.ClientInBytes,
		"expected keepalives":     r.KeepalivesExpected,
		"bytes per keepalive":     r.BytesPerKeepalive,
		"agents RSS":              float64(r.Steady.AgentsRSSBytes),
		"view keys":               float64(r.View.Keys),
		"view bytes":              float64(r.View.Bytes),
		"view latency":            r.View.Latency.Seconds(),
		"failover min":            r.Failover.Min.Seconds(),
		"failover to marked p50":  r.FailoverMarked.P50.Seconds(),
		"claims beyond the roles": float64(r.Claims - r.Roles),
	}
	for name, v := range positive {
		if v <= 0 {
			t.Errorf("%d nodes: %s = %v, want > 0", r.Nodes, name, v)
		}
	}
	if r.Leader == "" {
		t.Errorf("%d nodes: no leader reported", r.Nodes)
	}
	if len(r.Steady.Members) != 3 {
		t.Fatalf("%d nodes: %d members in the steady usage, want 3", r.Nodes, len(r.Steady.Members))
	}
	for _, m := range r.Steady.Members {
		if m.PID <= 0 || m.RSSBytes == 0 || m.PeakRSSBytes < m.RSSBytes {
			t.Errorf("%d nodes: member %s: pid %d, RSS %d, peak %d", r.Nodes, m.Name, m.PID, m.RSSBytes, m.PeakRSSBytes)
		}
	}
	if len(r.Trials) != trials || r.Failover.N != trials {
		t.Fatalf("%d nodes: %d trials, failover N %d; want %d", r.Nodes, len(r.Trials), r.Failover.N, trials)
	}
	for _, tr := range r.Trials {
		if tr.To == tr.From || tr.NewToken <= tr.OldToken || tr.Marked < tr.Failover {
			t.Errorf("%d nodes: trial %+v: want another holder, a greater token, marked after claimed", r.Nodes, tr)
		}
	}
}

// TestScaleOptionsRejected: bad options fail before anything starts, naming the field.
func TestScaleOptionsRejected(t *testing.T) {
	ok := lab.ScaleOptions{Binary: binary, Nodes: 10}
	tests := []struct {
		name   string
		modify func(o *lab.ScaleOptions)
	}{
		{"no binary", func(o *lab.ScaleOptions) { o.Binary = "" }},
		{"one node", func(o *lab.ScaleOptions) { o.Nodes = 1 }},
		{"a role per node, no standby", func(o *lab.ScaleOptions) { o.Roles = 10 }},
		{"baseline of one node", func(o *lab.ScaleOptions) { o.BaselineNodes = 1 }},
		{"TTL not whole seconds", func(o *lab.ScaleOptions) { o.TTL = 1500 * time.Millisecond }},
		{"negative trials", func(o *lab.ScaleOptions) { o.Trials = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			o := ok
			tc.modify(&o)
			_, err := lab.BenchScale(ctx, o)
			if !errors.Is(err, lab.ErrInvalidOption) {
				t.Fatalf("BenchScale = %v, want ErrInvalidOption", err)
			}
		})
	}
}
