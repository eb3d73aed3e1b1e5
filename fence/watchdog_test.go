package fence

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
)

func TestWatchdog(t *testing.T) {
	tests := []struct {
		name    string
		act     func(t *testing.T, lu *fakeLU, a *Device, ap []*fakePath, b *Device)
		wantErr error // nil: cancel ctx, expect the channel closed without a value
	}{
		{"fenced", func(t *testing.T, _ *fakeLU, _ *Device, _ []*fakePath, b *Device) {
			if err := b.Fence(context.Background(), keyB, keyA); err != nil {
				t.Error(err)
			}
		}, ErrKeyGone},
		{"paths down", func(_ *testing.T, _ *fakeLU, _ *Device, ap []*fakePath, _ *Device) {
			for _, p := range ap {
				p.mu.Lock()
				p.down = true
				p.mu.Unlock()
			}
		}, errFakeTransport},
		{"nexus lost its registration, key still listed", func(_ *testing.T, lu *fakeLU, _ *Device, _ []*fakePath, _ *Device) {
			// A's nexus 1 reconnected: the target keeps the old
			// registration (moved to nexus 9 here) but the nexus is new.
			lu.mu.Lock()
			delete(lu.regs, 1)
			lu.regs[9] = uint64(keyA)
			lu.mu.Unlock()
		}, scsi.ErrReservationConflict},
		{"stopped by ctx", func(*testing.T, *fakeLU, *Device, []*fakePath, *Device) {}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			lu := newFakeLU()
			a, ap := fakeDevice(lu, 0, 1)
			b, _ := fakeDevice(lu, 2)
			if err := a.Unfence(ctx, keyA); err != nil {
				t.Fatal(err)
			}
			if err := b.Unfence(ctx, keyB); err != nil {
				t.Fatal(err)
			}
			wctx, wcancel := context.WithCancel(ctx)
			defer wcancel()
			ch := (&Watchdog{Device: a, Key: keyA, Interval: 10 * time.Millisecond, MaxFailures: 2}).Run(wctx)
			time.Sleep(30 * time.Millisecond) // a few healthy reads first
			tc.act(t, lu, a, ap, b)
			if tc.wantErr == nil {
				wcancel()
			}
			select {
			case err, ok := <-ch:
				if tc.wantErr == nil {
					if ok {
						t.Fatalf("got %v after cancel, want channel closed", err)
					}
					return
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case <-ctx.Done():
				t.Fatal("watchdog did not report")
			}
			if _, ok := <-ch; ok {
				t.Error("channel not closed after the report")
			}
		})
	}
}

func TestWatchShorthand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	lu := newFakeLU()
	a, _ := fakeDevice(lu, 0)
	ch := Watch(ctx, a, keyA, time.Millisecond) // never registered: reports at once
	select {
	case err := <-ch:
		if !errors.Is(err, ErrKeyGone) {
			t.Errorf("err = %v, want ErrKeyGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report")
	}
	cancel()
	for range ch {
	}
}
