package fence

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// TestTgtdWatchdogFiresOnFence: A's watchdog reports within one interval
// of B's fence. The bound asserted is generous (interval + 2s: a liveness
// check on a loaded CI machine); the measured latency is logged and
// BenchmarkWatchdogDetect reports it.
func TestTgtdWatchdogFiresOnFence(t *testing.T) {
	const interval = 200 * time.Millisecond
	tests := []struct {
		name    string
		noProbe bool
	}{
		{"read keys and write probe", false},
		{"read keys only", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := tgtdtest.Start(t, tgtdtest.WithPortals(2))
			ctx := tgtdCtx(t)
			a, b := newNode(t, tg, 1, 2, 1), newNode(t, tg, 2, 1, 1)
			mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
			mustNil(t, "B unfence", b.dev.Unfence(ctx, b.key))

			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch := (&Watchdog{Device: a.dev, Key: a.key, Interval: interval, NoWriteProbe: tc.noProbe, Log: a.dev.Log}).Run(wctx)
			select {
			case err := <-ch:
				t.Fatalf("watchdog fired before the fence: %v", err)
			case <-time.After(3 * interval):
			}
			start := time.Now()
			mustNil(t, "B fences A", b.dev.Fence(ctx, b.key, a.key))
			select {
			case err := <-ch:
				took := time.Since(start)
				t.Logf("watchdog reported %v after the fence (interval %v): %v", took.Round(time.Millisecond), interval, err)
				if !errors.Is(err, ErrKeyGone) && !errors.Is(err, scsi.ErrReservationConflict) {
					t.Fatalf("err = %v, want ErrKeyGone or reservation conflict", err)
				}
				if took > interval+2*time.Second {
					t.Errorf("took %v, want within one interval (%v) plus slack", took, interval)
				}
			case <-time.After(interval + 10*time.Second):
				t.Fatal("watchdog did not report the fence")
			}
			cancel()
			for range ch {
			}
		})
	}
}

// TestTgtdWatchdogQuietWhileRegistered: no false alarm over several
// intervals while A stays registered, with B's registrations changing.
func TestTgtdWatchdogQuietWhileRegistered(t *testing.T) {
	tg := tgtdtest.Start(t)
	ctx := tgtdCtx(t)
	a, b := newNode(t, tg, 1, 1, 1), newNode(t, tg, 2, 1, 1)
	mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
	wctx, cancel := context.WithCancel(ctx)
	ch := Watch(wctx, a.dev, a.key, 50*time.Millisecond)
	for range 3 {
		mustNil(t, "B unfence", b.dev.Unfence(ctx, b.key))
		mustNil(t, "B unregister", b.dev.Unregister(ctx, b.key))
	}
	select {
	case err := <-ch:
		t.Fatalf("false alarm: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	if err, ok := <-ch; ok {
		t.Fatalf("value after cancel: %v", err)
	}
}
