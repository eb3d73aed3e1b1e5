package iscsi

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// These tests measure how tgtd ties persistent-reservation registrations
// to iSCSI sessions; doc.go records the results.

const (
	keyA = 0x5a1e000000000001
	keyB = 0x5a1e000000000002
)

func prOut(t *testing.T, s *Session, sa scsi.PROutAction, typ scsi.ReservationType, p scsi.PROutParams) error {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	for range 5 {
		r, err := s.Execute(ctx, scsi.PersistentReserveOut(sa, scsi.ScopeLU, typ, p))
		if err != nil {
			t.Fatalf("PR OUT %v: %v", sa, err)
		}
		if !errors.Is(r.Err(), scsi.ErrUnitAttention) {
			return r.Err()
		}
	}
	t.Fatalf("PR OUT %v: UNIT ATTENTION does not clear", sa)
	return nil
}

func readKeys(t *testing.T, s *Session) []uint64 {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	for range 5 {
		r, err := s.Execute(ctx, scsi.PersistentReserveIn(scsi.PRInReadKeys, 1024))
		if err != nil {
			t.Fatalf("READ KEYS: %v", err)
		}
		if errors.Is(r.Err(), scsi.ErrUnitAttention) {
			continue
		}
		if r.Err() != nil {
			t.Fatalf("READ KEYS: %v", r.Err())
		}
		k, err := scsi.ParseReadKeys(r.DataIn)
		if err != nil {
			t.Fatal(err)
		}
		return k.Keys
	}
	t.Fatal("READ KEYS: UNIT ATTENTION does not clear")
	return nil
}

func write(t *testing.T, s *Session) error {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	for range 5 {
		r, err := s.Execute(ctx, scsi.Write16(0, 1, false, make([]byte, 512)))
		if err != nil {
			t.Fatalf("WRITE: %v", err)
		}
		if !errors.Is(r.Err(), scsi.ErrUnitAttention) {
			return r.Err()
		}
	}
	t.Fatal("WRITE: UNIT ATTENTION does not clear")
	return nil
}

// isRegistered asks the target whether s's I_T nexus holds key: REGISTER
// with RESERVATION KEY=key, SARK=key succeeds only for a registered nexus
// holding key (RESERVATION CONFLICT otherwise), and changes nothing.
func isRegistered(t *testing.T, s *Session, key uint64) bool {
	t.Helper()
	err := prOut(t, s, scsi.PROutRegister, 0, scsi.PROutParams{Key: key, SARK: key})
	if err != nil && !errors.Is(err, scsi.ErrReservationConflict) {
		t.Fatalf("REGISTER probe: %v", err)
	}
	return err == nil
}

func hexKeys(keys []uint64) string { return fmt.Sprintf("%#x", keys) }

// TestPRRegistrationAcrossSessions measures what happens to a registration
// when the session that made it ends and a new session with the SAME
// InitiatorName and ISID logs in.
func TestPRRegistrationAcrossSessions(t *testing.T) {
	tests := []struct {
		name string
		// next returns the session that continues after the first one
		// ended, and whether the old session is gone from tgtd.
		next func(t *testing.T, tg *tgtdtest.Target, s *Session) *Session
	}{
		{name: "logout then new login", next: func(t *testing.T, tg *tgtdtest.Target, s *Session) *Session {
			if err := s.Close(testCtx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			return dial(t, tg, 1, testConfig(t, 1))
		}},
		{name: "target drops connection, reconnect", next: func(t *testing.T, tg *tgtdtest.Target, s *Session) *Session {
			conns, err := tg.Connections()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range conns {
				if c.Initiator == testInitiator(1) {
					if err := tg.DropConnection(c); err != nil {
						t.Fatal(err)
					}
				}
			}
			waitFor(t, 5*time.Second, "drop noticed", func() bool { return !s.Nexus().Connected })
			return s
		}},
		{name: "initiator socket closed, reconnect", next: func(t *testing.T, _ *tgtdtest.Target, s *Session) *Session {
			_ = currentConn(s).nc.Close()
			waitFor(t, 5*time.Second, "drop noticed", func() bool { return !s.Nexus().Connected })
			return s
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := tgtdtest.Start(t)
			cfg := testConfig(t, 1)
			cfg.NopInterval = -1
			a := dial(t, tg, 1, cfg)
			b := dial(t, tg, 1, testConfig(t, 2)) // another node
			if err := prOut(t, a, scsi.PROutRegister, 0, scsi.PROutParams{SARK: keyA}); err != nil {
				t.Fatal(err)
			}
			if err := prOut(t, b, scsi.PROutRegister, 0, scsi.PROutParams{SARK: keyB}); err != nil {
				t.Fatal(err)
			}
			if err := prOut(t, a, scsi.PROutReserve, scsi.TypeWriteExclusiveRegistrantsOnly, scsi.PROutParams{Key: keyA}); err != nil {
				t.Fatal(err)
			}
			before := a.Nexus()
			t.Logf("before: keys %s, a registered=%v, a writes: %v", hexKeys(readKeys(t, b)), isRegistered(t, a, keyA), write(t, a))

			a2 := tc.next(t, tg, a)
			keys := readKeys(t, b)
			registered := isRegistered(t, a2, keyA)
			werr := write(t, a2)
			t.Logf("after:  nexus %+v -> %+v", before, a2.Nexus())
			t.Logf("after:  keys %s, new session registered=%v, new session write: %v", hexKeys(keys), registered, werr)
			conns, _ := tg.Connections()
			t.Logf("after:  tgtd sessions %+v", conns)

			if err := prOut(t, a2, scsi.PROutRegisterAndIgnoreExisting, 0, scsi.PROutParams{SARK: keyA}); err != nil {
				t.Fatal(err)
			}
			rekeys := readKeys(t, b)
			t.Logf("re-register (REGISTER AND IGNORE EXISTING KEY): keys %s, write: %v", hexKeys(rekeys), write(t, a2))
			t.Logf("reservation: %+v", readReservation(t, b))
			rerr := prOut(t, a2, scsi.PROutRelease, scsi.TypeWriteExclusiveRegistrantsOnly, scsi.PROutParams{Key: keyA})
			t.Logf("RELEASE from the new session: %v; reservation now %+v", rerr, readReservation(t, b))
			if err := prOut(t, a2, scsi.PROutReserve, scsi.TypeWriteExclusiveRegistrantsOnly, scsi.PROutParams{Key: keyA}); err != nil {
				t.Logf("RESERVE again from the new session: %v", err)
			}

			// Preempting keyA (what fencing does) must remove every
			// registration holding it, stale ones included. tgtd does not
			// implement PREEMPT AND ABORT (see TestPRPreemptAndAbort).
			if err := prOut(t, b, scsi.PROutPreempt, scsi.TypeWriteExclusiveRegistrantsOnly, scsi.PROutParams{Key: keyB, SARK: keyA}); err != nil {
				t.Fatal(err)
			}
			final := readKeys(t, b)
			ferr := write(t, a2)
			t.Logf("after PREEMPT keyA: keys %s, a write: %v", hexKeys(final), ferr)
			if slices.Contains(final, keyA) || !errors.Is(ferr, scsi.ErrReservationConflict) {
				t.Fatalf("fence incomplete: keys %s, fenced write: %v", hexKeys(final), ferr)
			}
		})
	}
}

// TestPRNoAutomaticReregistration: after a reconnect the initiator sends no
// PERSISTENT RESERVE OUT of its own; a preempted (fenced) node stays fenced.
func TestPRNoAutomaticReregistration(t *testing.T) {
	tg := tgtdtest.Start(t)
	cfg := testConfig(t, 1)
	cfg.NopInterval = -1
	a := dial(t, tg, 1, cfg)
	b := dial(t, tg, 1, testConfig(t, 2))
	if err := prOut(t, a, scsi.PROutRegister, 0, scsi.PROutParams{SARK: keyA}); err != nil {
		t.Fatal(err)
	}
	if err := prOut(t, b, scsi.PROutRegister, 0, scsi.PROutParams{SARK: keyB}); err != nil {
		t.Fatal(err)
	}
	if err := prOut(t, b, scsi.PROutReserve, scsi.TypeWriteExclusiveRegistrantsOnly, scsi.PROutParams{Key: keyB}); err != nil {
		t.Fatal(err)
	}
	if err := prOut(t, b, scsi.PROutPreempt, scsi.TypeWriteExclusiveRegistrantsOnly, scsi.PROutParams{Key: keyB, SARK: keyA}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_ = currentConn(a).nc.Close()
		waitFor(t, 5*time.Second, "drop noticed", func() bool { return !a.Nexus().Connected })
		if err := write(t, a); !errors.Is(err, scsi.ErrReservationConflict) {
			t.Fatalf("reconnect %d: fenced node's write = %v, want RESERVATION CONFLICT", i, err)
		}
	}
	if keys := readKeys(t, b); !slices.Equal(keys, []uint64{keyB}) {
		t.Fatalf("keys %s, want only keyB", hexKeys(keys))
	}
}

// TestPRPreemptAndAbort records that tgtd answers PREEMPT AND ABORT with
// ILLEGAL REQUEST / INVALID FIELD IN CDB (usr/spc.c has it commented out),
// so fencing against tgtd must use PREEMPT.
func TestPRPreemptAndAbort(t *testing.T) {
	tg := tgtdtest.Start(t)
	a := dial(t, tg, 1, testConfig(t, 1))
	b := dial(t, tg, 1, testConfig(t, 2))
	if err := prOut(t, a, scsi.PROutRegister, 0, scsi.PROutParams{SARK: keyA}); err != nil {
		t.Fatal(err)
	}
	if err := prOut(t, b, scsi.PROutRegister, 0, scsi.PROutParams{SARK: keyB}); err != nil {
		t.Fatal(err)
	}
	err := prOut(t, b, scsi.PROutPreemptAndAbort, scsi.TypeWriteExclusiveRegistrantsOnly, scsi.PROutParams{Key: keyB, SARK: keyA})
	t.Logf("PREEMPT AND ABORT: %v", err)
	if err == nil {
		t.Log("this tgtd implements PREEMPT AND ABORT; update doc.go")
	} else if !errors.Is(err, scsi.ErrIllegalRequest) {
		t.Fatalf("PREEMPT AND ABORT: %v", err)
	}
}

func readReservation(t *testing.T, s *Session) scsi.Reservation {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	for range 5 {
		r, err := s.Execute(ctx, scsi.PersistentReserveIn(scsi.PRInReadReservation, 64))
		if err != nil {
			t.Fatalf("READ RESERVATION: %v", err)
		}
		if errors.Is(r.Err(), scsi.ErrUnitAttention) {
			continue
		}
		res, err := scsi.ParseReadReservation(r.DataIn)
		if err != nil || r.Err() != nil {
			t.Fatalf("READ RESERVATION: %v / %v", r.Err(), err)
		}
		return res
	}
	t.Fatal("READ RESERVATION: UNIT ATTENTION does not clear")
	return scsi.Reservation{}
}
