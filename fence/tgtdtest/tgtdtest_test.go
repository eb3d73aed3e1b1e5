package tgtdtest

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartStop(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		luns int
	}{
		{name: "default", luns: 1},
		{name: "three luns chap two portals", opts: []Option{WithLUNs(3), WithLUNSize(1 << 20), WithCHAP("alice", "secretsecret1"), WithPortals(2)}, luns: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := Start(t, tc.opts...)
			out, err := tg.Tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, tg.IQN()) {
				t.Fatalf("target %s not in show output:\n%s", tg.IQN(), out)
			}
			for lun := 1; lun <= tc.luns; lun++ {
				if !strings.Contains(out, tg.BackingFile(lun)) {
					t.Errorf("lun %d backing file missing:\n%s", lun, out)
				}
			}
			for _, a := range tg.Addrs() {
				c, err := net.DialTimeout("tcp", a, time.Second)
				if err != nil {
					t.Fatalf("portal %s: %v", a, err)
				}
				c.Close()
			}
			if got, want := tg.URL(1), "iscsi://"+tg.Addr()+"/"+tg.IQN()+"/1"; got != want {
				t.Errorf("URL(1) = %q, want %q", got, want)
			}
			tg.Stop()
			if _, err := net.DialTimeout("tcp", tg.Addr(), time.Second); err == nil {
				t.Errorf("portal %s still accepts after Stop", tg.Addr())
			}
			if _, err := os.Stat(tg.BackingFile(1)); err != nil {
				t.Errorf("backing file removed before test cleanup: %v", err)
			}
		})
	}
}

func TestParseConns(t *testing.T) {
	out := "Session: 1\n    Connection: 0\n        Initiator: iqn.x:a\n        IP Address: 127.0.0.1\nSession: 3\n    Connection: 2\n        Initiator: iqn.x:b\n"
	got, err := parseConns(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []Conn{{1, 0, "iqn.x:a"}, {3, 2, "iqn.x:b"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("parseConns = %+v, want %+v", got, want)
	}
}
