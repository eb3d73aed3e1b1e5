//go:build linux

package lab_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// TestFastDetectionStalledHolder: with detection fast (heartbeats every 50 ms, 4
// misses), a holder whose agent stalls (SIGSTOP) for less than the miss window keeps its
// role; one stalled for longer (but less than its 2 s lease TTL, so only fast detection
// can act) is fenced and replaced, its late writes are rejected by the target, and none
// of the client's acknowledged writes is lost.
//
// It runs twice: with plain health endpoints, and in a Secure lab where every health
// endpoint is mutual TLS and the probe verifies the holder with the lab's CA.
func TestFastDetectionStalledHolder(t *testing.T) {
	requireNetLab(t)
	for _, secure := range []bool{false, true} {
		name := "plain"
		if secure {
			name = "mutual TLS"
		}
		t.Run(name, func(t *testing.T) { testFastDetectionStalledHolder(t, secure) })
	}
}

func testFastDetectionStalledHolder(t *testing.T, secure bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f, err := lab.NewFarm(ctx, lab.Options{Binary: binary, Netns: true, Detection: lease.DetectFast, TTL: 2 * time.Second, Secure: secure})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Errorf("close farm: %v", err)
		}
	}()
	if err := f.StartOfDay(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := f.StartWriter(ctx, "role-a", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	before, err := f.Probe(ctx, "role-a")
	if err != nil {
		t.Fatal(err)
	}
	if before.Node != "a" {
		t.Fatalf("role-a served by %s, want a", before.Node)
	}

	// Heartbeats lost but the agent alive: a's client network (where heartbeats go) is
	// cut for 1 s; the probe over the control network finds a's agent answering, over
	// TLS in the Secure lab, so nobody fences it. (First: the short stall's hold below
	// gives the heartbeats time to be heard again before the long stall is timed.)
	if err := f.Net().Partition(ctx, "a", []string{lab.NetClient}, nil); err != nil {
		t.Fatal(err)
	}
	holdErr := f.Hold(ctx, time.Second, func(cs takeover.ClusterStatus) error {
		r, _ := lab.FindRole(cs, "role-a")
		if r.Holder != "a" || r.Token != before.Token {
			return fmt.Errorf("role-a moved while only a's heartbeats were lost: holder %s token %d (was a, %d)", r.Holder, r.Token, before.Token)
		}
		return nil
	})
	if err := f.Net().Heal(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if holdErr != nil {
		t.Fatal(holdErr)
	}
	for _, n := range f.Nodes() {
		if b, err := os.ReadFile(f.LogPath(n)); err == nil && strings.Contains(string(b), "cannot be checked") {
			t.Fatalf("%s could not probe a's health endpoint (see %s)", n, f.LogPath(n))
		}
	}

	// A short stall: 60 ms, well inside the 200 ms window.
	stall(t, f, "a", 60*time.Millisecond)
	if err := f.Hold(ctx, 2*time.Second, func(cs takeover.ClusterStatus) error {
		r, _ := lab.FindRole(cs, "role-a")
		if r.Holder != "a" || r.Token != before.Token {
			return fmt.Errorf("role-a moved after a 60 ms stall: holder %s token %d (was a, %d)", r.Holder, r.Token, before.Token)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A long stall: 1.5 s, longer than the window, shorter than the TTL.
	if _, err := f.Signal("a", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if _, err := f.Signal("a", syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT a: %v", err)
			}
		}
	}
	defer resume()
	ev, err := f.WaitEvent(ctx, "role-a", func(ev lease.Event) bool {
		return ev.Kind == takeover.EventTakeover && ev.Token > before.Token
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range ev.Steps {
		names = append(names, s.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "detect probe fence revoke join") {
		t.Errorf("takeover by %s with steps %s: want the fast path (detect probe fence revoke join ...)", ev.Node, lease.FormatSteps(ev.Steps))
	}
	time.Sleep(200 * time.Millisecond) // the stalled holder's writes queue meanwhile
	resume()
	if _, err := f.WaitFor(ctx, "a demoted and standing by again", func(cs takeover.ClusterStatus) bool {
		return lab.IsStandby(cs, "a") && lab.Holds(cs, ev.Node, "role-a")
	}); err != nil {
		t.Fatal(err)
	}
	// The stalled holder's queued writes reached the target after the fence.
	waitLog(t, f.LogPath("a"), "RESERVATION CONFLICT")

	res := w.Stop()
	wl, err := f.ReadWrites(ctx, "role-a")
	if err != nil {
		t.Fatal(err)
	}
	if lost := lab.Lost(res.Acked, wl.Seqs); len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost (e.g. %d); %d acknowledged, log read from %s", len(lost), lost[0], len(res.Acked), wl.Node)
	}
	t.Logf("takeover by %s: %s; %d writes acknowledged, %d failed, 0 lost", ev.Node, lease.FormatSteps(ev.Steps), len(res.Acked), res.Failed)
}

// stall stops node's agent for d.
func stall(t *testing.T, f *lab.Farm, node string, d time.Duration) {
	t.Helper()
	if _, err := f.Signal(node, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	if _, err := f.Signal(node, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

func waitLog(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s never logged %q", path, want)
}
