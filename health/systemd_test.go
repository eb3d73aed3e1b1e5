package health

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/takeover"
)

// fakeLocal is a Source whose local status the test changes.
type fakeLocal struct {
	mu sync.Mutex
	l  takeover.LocalStatus
}

func (f *fakeLocal) Local() takeover.LocalStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.l
}

func (f *fakeLocal) set(fn func(l *takeover.LocalStatus)) {
	f.mu.Lock()
	fn(&f.l)
	f.mu.Unlock()
}

func (f *fakeLocal) Cluster(context.Context) (takeover.ClusterStatus, error) {
	return takeover.ClusterStatus{}, nil
}

// The notify protocol against a real unixgram socket, as systemd provides it: READY=1
// only once joined, STATUS lines on change, WATCHDOG=1 only while the loop is fresh.
func TestNotifierSpeaksSystemdProtocol(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000") // 400 ms: pings every 200 ms while healthy

	src := &fakeLocal{l: takeover.LocalStatus{State: takeover.StateDown}}
	n := NewNotifier(src, nil)
	n.every = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	read := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notify socket: %v", err)
		}
		return string(buf[:k])
	}
	readUntil := func(want string) string {
		t.Helper()
		for i := 0; i < 100; i++ {
			if m := read(); strings.Contains(m, want) {
				return m
			}
		}
		t.Fatalf("no message with %q", want)
		return ""
	}

	if m := read(); m != "STATUS=starting" {
		t.Fatalf("first message %q", m)
	}
	if m := read(); strings.Contains(m, "READY=1") {
		t.Fatalf("READY before the node joined: %q", m)
	}
	src.set(func(l *takeover.LocalStatus) {
		l.State, l.EtcdOK, l.Roles = takeover.StateActive, true, map[string]int64{"web": 42}
	})
	m := readUntil("READY=1")
	if !strings.Contains(m, "STATUS=active web@42") {
		t.Fatalf("ready message without status: %q", m)
	}
	readUntil("WATCHDOG=1")

	// A hung loop: no more WATCHDOG=1, so systemd restarts the agent.
	src.set(func(l *takeover.LocalStatus) { l.LoopAge = time.Second })
	time.Sleep(100 * time.Millisecond) // let a message sent before the change arrive
	for i := 0; i < 4; i++ {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 4096)
		if k, err := conn.Read(buf); err == nil && strings.Contains(string(buf[:k]), "WATCHDOG=1") {
			t.Fatalf("WATCHDOG=1 sent while the loop is stale: %q", buf[:k])
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	readUntil("STOPPING=1")
}
