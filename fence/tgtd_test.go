package fence

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/fence/iscsi"
	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// These tests run the package against a real target: a private tgtd on
// 127.0.0.1 (fence/tgtdtest) reached through the userspace iSCSI
// initiator (fence/iscsi). Every node has two paths, one per tgtd portal
// (two I_T nexuses), so multipath handling is exercised too. They skip
// without tgtd unless UNDERSTUDY_REQUIRE_ALL=1.

const testCluster = "tgtd-test"

// node is one simulated understudy node: its key, its sessions (one per
// path) and the Device over them.
type node struct {
	key      Key
	sessions []*iscsi.Session
	dev      *Device
}

func nodeKey(t testing.TB, id uint32) Key {
	k, err := NewKey(testCluster, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// dialPath logs node id in to lun through portal; the ISID differs per path
// (index = portal) because sessions with the same initiator name and ISID
// to one target reinstate each other.
func dialPath(t testing.TB, tg *tgtdtest.Target, id uint32, portal, lun int) *iscsi.Session {
	t.Helper()
	target, err := iscsi.ParseURL(tg.URLOn(portal, lun))
	if err != nil {
		t.Fatal(err)
	}
	cfg := iscsi.Config{
		InitiatorName: fmt.Sprintf("iqn.2026-11.dev.understudy:node-%d", id),
		ISID:          iscsi.ISIDFromNodeIDIndex(id, uint8(portal)),
		NopInterval:   -1, // no background pings: tests drop connections on purpose
	}
	if tt, ok := t.(*testing.T); ok { // benchmarks measure without logging
		cfg.Logger = zaptest.NewLogger(tt).Named(fmt.Sprintf("node%d.path%d", id, portal))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := iscsi.Dial(ctx, target, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", target, err, tg.LogTail())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// newNode opens one path per portal of tg to lun for node id.
func newNode(t testing.TB, tg *tgtdtest.Target, id uint32, portals, lun int) *node {
	t.Helper()
	n := &node{key: nodeKey(t, id), dev: &Device{Name: fmt.Sprintf("node%d:lun%d", id, lun)}}
	for p := 0; p < portals; p++ {
		s := dialPath(t, tg, id, p, lun)
		n.sessions = append(n.sessions, s)
		n.dev.Paths = append(n.dev.Paths, s)
	}
	if tt, ok := t.(*testing.T); ok {
		n.dev.Log = zaptest.NewLogger(tt).Named(fmt.Sprintf("node%d", id))
	}
	return n
}

func tgtdCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// raw sends one command on one path without any retry and returns the
// device's status error (nil for GOOD) so tests can see UNIT ATTENTIONs.
func raw(t testing.TB, s *iscsi.Session, cmd scsi.Command) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.Execute(ctx, cmd)
	if err != nil {
		t.Fatalf("transport: %v", err)
	}
	return r.Err()
}

// rawUntilNoUA repeats cmd while it answers UNIT ATTENTION and returns the
// UAs seen and the final status error.
func rawUntilNoUA(t testing.TB, s *iscsi.Session, cmd scsi.Command) ([]string, error) {
	t.Helper()
	var uas []string
	for range 8 {
		err := raw(t, s, cmd)
		var se *scsi.SenseError
		if !errors.Is(err, scsi.ErrUnitAttention) || !errors.As(err, &se) {
			return uas, err
		}
		uas = append(uas, fmt.Sprintf("%02X/%02X", se.Sense.ASC, se.Sense.ASCQ))
	}
	t.Fatalf("UNIT ATTENTION does not clear: %v", uas)
	return nil, nil
}

func writeBlock(lba uint64) scsi.Command { return scsi.Write16(lba, 1, false, make([]byte, 512)) }
func readBlock(lba uint64) scsi.Command  { return scsi.Read16(lba, 1, false, 512) }

func mustNil(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

func keysOf(t testing.TB, ctx context.Context, d *Device) []Key {
	t.Helper()
	r, err := d.Keys(ctx)
	mustNil(t, "read keys", err)
	return r.Keys
}

func countKey(keys []Key, k Key) int {
	n := 0
	for _, x := range keys {
		if x == k {
			n++
		}
	}
	return n
}
