package lab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/takeover"
)

// binary is the understudy executable built once by TestMain.
var binary string

// Bounds of the tests' waits: each wait, and a whole test.
const (
	waitTimeout = 20 * time.Second
	testTimeout = 3 * time.Minute
)

// testTTL is 2 s, not the lab's 1 s default: the suite shares 2 cores with the race
// detector, and under that load a 1 s lease rightly demotes its holders now and then,
// which is not what these tests are about. The benchmarks use 1 s.
const testTTL = 2 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "understudy-lab-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "understudy")
	if err := buildBinary(binary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// buildBinary builds ./cmd/understudy from the module root into out.
func buildBinary(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "build", "-o", out, "./cmd/understudy")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/understudy in %s: %w\n%s", root, err, msg)
	}
	return nil
}

// newFarm starts a farm whose agents are stopped, and whose logs are shown if the test
// failed, at cleanup.
func newFarm(t *testing.T) (*lab.Farm, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	log := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	f, err := lab.NewFarm(ctx, lab.Options{Binary: binary, Log: log, TTL: testTTL})
	if err != nil {
		t.Fatalf("NewFarm: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, f)
		}
		if err := f.Close(); err != nil {
			t.Errorf("Farm.Close: %v", err)
		}
	})
	return f, ctx
}

// dumpLogs shows the tail of each agent's log.
func dumpLogs(t *testing.T, f *lab.Farm) {
	for _, name := range f.Nodes() {
		b, err := os.ReadFile(f.LogPath(name))
		if err != nil {
			continue
		}
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("--- agent log of %s (tail) ---\n%s", name, b)
	}
}

func waitFor(t *testing.T, ctx context.Context, f *lab.Farm, desc string, cond func(takeover.ClusterStatus) bool) takeover.ClusterStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	cs, err := f.WaitFor(ctx, desc, cond)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func waitServed(t *testing.T, ctx context.Context, f *lab.Farm, role string, ok func(lab.Reply) bool) lab.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	rep, _, err := f.WaitServed(ctx, role, 20*time.Millisecond, ok)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func mustStart(t *testing.T, ctx context.Context, f *lab.Farm, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := f.StartNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}

func mustProbe(t *testing.T, ctx context.Context, f *lab.Farm, role string) lab.Reply {
	t.Helper()
	rep, err := f.Probe(ctx, role)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func mustKill(t *testing.T, f *lab.Farm, name string) {
	t.Helper()
	if _, err := f.Kill(name); err != nil {
		t.Fatal(err)
	}
}

func mustStartOfDay(t *testing.T, ctx context.Context, f *lab.Farm) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 3*waitTimeout)
	defer cancel()
	if err := f.StartOfDay(sctx); err != nil {
		t.Fatal(err)
	}
}

// processGone reports whether pid has exited: no such process, or a zombie nobody
// reaped yet (a container's init may not reap).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	// Field 3, after "(comm)", is the state.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func waitGone(t *testing.T, ctx context.Context, pid int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !processGone(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("process %d still alive: %v", pid, ctx.Err())
		case <-tick.C:
		}
	}
}

func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := lab.RunDemo(ctx, &out, lab.DemoOptions{Binary: binary, TTL: testTTL, Loopback: true,
		Log: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	t.Logf("demo took %s; output:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("RunDemo: %v", err)
	}
	if !strings.Contains(out.String(), "role-a answers from d") {
		t.Errorf("demo output does not say that d serves role-a")
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("demo output to a buffer contains colour escapes")
	}
}

func TestNewFarmOptions(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts lab.Options
	}{
		{"no binary", lab.Options{}},
		{"ttl below 1s", lab.Options{Binary: binary, TTL: 500 * time.Millisecond}},
		{"ttl not whole seconds", lab.Options{Binary: binary, TTL: 1500 * time.Millisecond}},
		{"bad log format", lab.Options{Binary: binary, LogFormat: "xml"}},
		{"dir not empty", lab.Options{Binary: binary, Dir: full}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			f, err := lab.NewFarm(ctx, tc.opts)
			if err == nil {
				_ = f.Close()
				t.Fatal("NewFarm succeeded, want an error")
			}
			if !errors.Is(err, lab.ErrInvalidOption) {
				t.Errorf("NewFarm: %v, want ErrInvalidOption", err)
			}
		})
	}
}
