package iscsi

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

func currentConn(s *Session) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func TestKeepalive(t *testing.T) {
	t.Run("our pings", func(t *testing.T) {
		tg := tgtdtest.Start(t)
		cfg := testConfig(t, 1)
		cfg.NopInterval, cfg.NopTimeout = 20*time.Millisecond, time.Second
		s := dial(t, tg, 1, cfg)
		c := currentConn(s)
		waitFor(t, 5*time.Second, "5 answered pings", func() bool { return c.pings.Load() >= 5 })
		rtt, err := s.Ping(testCtx(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ping rtt %v", rtt)
	})
	t.Run("target pings", func(t *testing.T) {
		// tgtd pings every nop_interval seconds and drops the connection
		// after nop_count unanswered pings.
		tg := tgtdtest.Start(t, tgtdtest.WithTargetParam("nop_interval", "1"), tgtdtest.WithTargetParam("nop_count", "2"))
		cfg := testConfig(t, 1)
		cfg.NopInterval = -1
		s := dial(t, tg, 1, cfg)
		c := currentConn(s)
		waitFor(t, 10*time.Second, "3 answered target pings", func() bool { return c.nopAnswers.Load() >= 3 })
		if n := s.Nexus(); !n.Connected || n.Generation != 1 {
			t.Fatalf("nexus %+v: connection should have survived", n)
		}
	})
	t.Run("hung target", func(t *testing.T) {
		tg := tgtdtest.Start(t)
		cfg := testConfig(t, 1)
		cfg.NopInterval, cfg.NopTimeout = 50*time.Millisecond, 200*time.Millisecond
		cfg.LoginTimeout = 500 * time.Millisecond
		s := dial(t, tg, 1, cfg)
		c := currentConn(s)
		if err := tg.Pause(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "keepalive to fail the connection", c.isDead)
		if !errors.Is(c.err(), ErrKeepaliveTimeout) || !errors.Is(c.err(), ErrConnectionLost) {
			t.Fatalf("connection error %v, want ErrKeepaliveTimeout", c.err())
		}
		// A login to the stopped target times out instead of hanging.
		if _, err := s.Execute(testCtx(t, 5*time.Second), scsi.TestUnitReady()); err == nil {
			t.Fatal("Execute on a stopped target succeeded")
		} else {
			t.Logf("Execute while stopped: %v", err)
		}
		if err := tg.Resume(); err != nil {
			t.Fatal(err)
		}
		clearUA(t, s)
		if n := s.Nexus(); !n.Connected || n.Generation < 2 {
			t.Fatalf("nexus %+v after resume, want a new login", n)
		}
	})
}

func TestCancel(t *testing.T) {
	t.Run("hung target: abort unanswered, connection dropped", func(t *testing.T) {
		tg := tgtdtest.Start(t)
		cfg := testConfig(t, 1)
		cfg.AbortTimeout = 300 * time.Millisecond
		cfg.NopInterval = -1
		s := dial(t, tg, 1, cfg)
		clearUA(t, s)
		if err := tg.Pause(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.Execute(ctx, scsi.TestUnitReady())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Execute = %v, want context.DeadlineExceeded", err)
		}
		t.Logf("returned after %v: %v", time.Since(start), err)
		if n := s.Nexus(); n.Connected {
			t.Fatalf("connection still up after an unanswered abort: %+v", n)
		}
		if err := tg.Resume(); err != nil {
			t.Fatal(err)
		}
		clearUA(t, s)
	})
	t.Run("busy target: abort answered or command done, session usable", func(t *testing.T) {
		tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(64<<20))
		s := dial(t, tg, 1, testConfig(t, 1))
		clearUA(t, s)
		data := make([]byte, 32<<20)
		for _, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			r, err := s.Execute(ctx, scsi.Write16(0, uint32(len(data)/512), false, data))
			cancel()
			t.Logf("deadline %v: status %v, err %v, nexus %+v", d, r.Status, err, s.Nexus())
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrConnectionLost) {
				t.Fatalf("Execute = %v", err)
			}
		}
		clearUA(t, s)
		ctx := testCtx(t, 20*time.Second)
		if _, err := s.Execute(ctx, scsi.TestUnitReady()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClose(t *testing.T) {
	tg := tgtdtest.Start(t)
	s := dial(t, tg, 1, testConfig(t, 1))
	ctx := testCtx(t, 10*time.Second)
	if conns, err := tg.Connections(); err != nil || len(conns) != 1 {
		t.Fatalf("tgtd connections %+v, %v; want 1", conns, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, 5*time.Second, "tgtd to forget the session", func() bool {
		conns, err := tg.Connections()
		return err == nil && len(conns) == 0
	})
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Execute(ctx, scsi.TestUnitReady()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Execute after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after Close = %v, want ErrClosed", err)
	}
}

func TestReconnect(t *testing.T) {
	tests := []struct {
		name string
		drop func(t *testing.T, tg *tgtdtest.Target, s *Session)
	}{
		{name: "target drops connection (tgtadm delete conn)", drop: func(t *testing.T, tg *tgtdtest.Target, _ *Session) {
			if n, err := tg.DropConnections(); err != nil || n != 1 {
				t.Fatalf("DropConnections = %d, %v", n, err)
			}
		}},
		{name: "initiator socket closed", drop: func(t *testing.T, _ *tgtdtest.Target, s *Session) {
			_ = currentConn(s).nc.Close()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := tgtdtest.Start(t)
			cfg := testConfig(t, 1)
			cfg.NopInterval = -1 // only the drop may notice
			s := dial(t, tg, 1, cfg)
			clearUA(t, s)
			before := s.Nexus()
			old := currentConn(s)
			tc.drop(t, tg, s)
			waitFor(t, 5*time.Second, "the reader to notice the drop", old.isDead)
			t.Logf("connection error after drop: %v", old.err())
			if !errors.Is(old.err(), ErrConnectionLost) {
				t.Fatalf("connection error %v, want ErrConnectionLost", old.err())
			}
			ctx := testCtx(t, 10*time.Second)
			r, err := s.Execute(ctx, scsi.TestUnitReady())
			if err != nil {
				t.Fatalf("Execute after drop: %v", err)
			}
			t.Logf("first command after reconnect: %v (%v)", r.Status, r.Err())
			after := s.Nexus()
			if after.Generation != before.Generation+1 || after.ISID != before.ISID || !after.Connected {
				t.Fatalf("nexus before %+v after %+v: want same ISID, next generation", before, after)
			}
			t.Logf("TSIH %d -> %d", before.TSIH, after.TSIH)
			waitFor(t, 5*time.Second, "tgtd to show exactly one session", func() bool {
				conns, err := tg.Connections()
				return err == nil && len(conns) == 1
			})
		})
	}
	t.Run("outstanding command fails, never resent", func(t *testing.T) {
		tg := tgtdtest.Start(t)
		cfg := testConfig(t, 1)
		cfg.NopInterval = -1
		s := dial(t, tg, 1, cfg)
		clearUA(t, s)
		if err := tg.Pause(); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := s.Execute(testCtx(t, 10*time.Second), scsi.TestUnitReady())
			errc <- err
		}()
		c := currentConn(s)
		waitFor(t, 5*time.Second, "the command to be outstanding", func() bool {
			c.tasksMu.Lock()
			defer c.tasksMu.Unlock()
			return len(c.tasks) == 1
		})
		_ = c.nc.Close()
		if err := <-errc; !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("outstanding Execute = %v, want ErrConnectionLost", err)
		}
		if err := tg.Resume(); err != nil {
			t.Fatal(err)
		}
		if g := s.Nexus().Generation; g != 1 {
			t.Fatalf("generation %d: the session reconnected by itself", g)
		}
	})
}

// TestSameISIDReinstatement: a second login with the same InitiatorName and
// ISID (TSIH 0) reinstates the session: tgtd closes the first one.
func TestSameISIDReinstatement(t *testing.T) {
	tg := tgtdtest.Start(t, tgtdtest.WithLUNs(2))
	cfg := testConfig(t, 1)
	cfg.NopInterval = -1
	a := dial(t, tg, 1, cfg)
	b := dial(t, tg, 2, cfg)
	waitFor(t, 5*time.Second, "tgtd to drop the first session", func() bool { return !a.Nexus().Connected })
	t.Logf("first session: %v; second: %+v", currentConn(a).err(), b.Nexus())
	if !b.Nexus().Connected {
		t.Fatal("second session dropped too")
	}
	// A different ISID index coexists.
	cfg2 := cfg
	cfg2.ISID = ISIDFromNodeIDIndex(1, 1)
	c := dial(t, tg, 1, cfg2)
	clearUA(t, c)
	if !b.Nexus().Connected || !c.Nexus().Connected {
		t.Fatalf("sessions with distinct ISIDs interfere: %+v %+v", b.Nexus(), c.Nexus())
	}
}
