package iscsi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testInitiator is node id's initiator name.
func testInitiator(id uint32) string { return fmt.Sprintf("iqn.2026-11.dev.understudy:node-%d", id) }

// testConfig is a Config for node id with a test logger.
func testConfig(t testing.TB, id uint32) Config {
	return Config{
		InitiatorName: testInitiator(id),
		ISID:          ISIDFromNodeID(id),
		Logger:        zaptest.NewLogger(t),
	}
}

// dial logs in to lun of tg and closes the session on cleanup.
func dial(t testing.TB, tg *tgtdtest.Target, lun int, cfg Config) *Session {
	t.Helper()
	target, err := ParseURL(tg.URL(lun))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := Dial(ctx, target, cfg)
	if err != nil {
		t.Fatalf("Dial %s: %v\n%s", target, err, tg.LogTail())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Logf("Close: %v", err)
		}
	})
	return s
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Session must satisfy fence.Transport (declared in package fence, which
// this package may not import).
var _ interface {
	Execute(context.Context, scsi.Command) (scsi.Response, error)
} = (*Session)(nil)
