//go:build linux

package takeover

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/lease"
)

// healthSpec is a spec with short timings for tests.
func healthSpec(typ, target string, cmd ...string) lease.HealthSpec {
	return lease.HealthSpec{Type: typ, Target: target, Command: cmd,
		Interval: lease.Duration(20 * time.Millisecond), Timeout: lease.Duration(500 * time.Millisecond),
		FailureThreshold: 3, StartTimeout: lease.Duration(5 * time.Second)}
}

// newTestHealth returns a HealthCheck that is stopped at cleanup.
func newTestHealth(t *testing.T, spec lease.HealthSpec) *HealthCheck {
	t.Helper()
	h, err := NewHealthCheck(spec, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("NewHealthCheck: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Stop(context.Background()); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return h
}

func healthRC(t *testing.T) RoleContext {
	return RoleContext{Role: "db", Node: "n1", NodeID: 3, Token: 99, Log: zaptest.NewLogger(t)}
}

func healthCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tcpListener listens on 127.0.0.1 (the kernel completes connects without Accept).
func tcpListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String()
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func statusServer(t *testing.T, code int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code == http.StatusFound {
			http.Redirect(w, r, "/elsewhere", code)
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/health"
}

func TestNewHealthCheckValidation(t *testing.T) {
	tests := []struct {
		name    string
		spec    lease.HealthSpec
		wantErr string
	}{
		{name: "tcp ok", spec: lease.HealthSpec{Type: "tcp", Target: "127.0.0.1:80"}},
		{name: "no type", spec: lease.HealthSpec{}, wantErr: `health.type: "": want tcp, http or exec`},
		{name: "tcp without port", spec: lease.HealthSpec{Type: "tcp", Target: "127.0.0.1"}, wantErr: `health.target: "127.0.0.1": want host:port`},
		{name: "tcp port zero", spec: lease.HealthSpec{Type: "tcp", Target: "127.0.0.1:0"}, wantErr: "health.target"},
		{name: "http not a url", spec: lease.HealthSpec{Type: "http", Target: "ftp://x/"}, wantErr: `health.target: "ftp://x/": want an http:// or https:// URL`},
		{name: "exec without command", spec: lease.HealthSpec{Type: "exec"}, wantErr: "health.command: required"},
		{name: "negative interval", spec: lease.HealthSpec{Type: "tcp", Target: "127.0.0.1:1", Interval: -1},
			wantErr: "health.interval: -1ns: want a positive duration"},
		{name: "negative threshold", spec: lease.HealthSpec{Type: "tcp", Target: "127.0.0.1:1", FailureThreshold: -2},
			wantErr: "health.failure_threshold: -2: want at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHealthCheck(tt.spec, nil)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewHealthCheck: %v", err)
			case tt.wantErr == "":
				if h.interval != defaultHealthInterval || h.threshold != defaultHealthThreshold || h.startTimeout != defaultHealthStartTimeout {
					t.Errorf("defaults not applied: %+v", h)
				}
			case err == nil || !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("NewHealthCheck error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestHealthCheckStartPasses(t *testing.T) {
	tests := []struct {
		name string
		spec func(t *testing.T) lease.HealthSpec
	}{
		{"tcp", func(t *testing.T) lease.HealthSpec { return healthSpec("tcp", tcpListener(t)) }},
		{"http 200", func(t *testing.T) lease.HealthSpec { return healthSpec("http", statusServer(t, http.StatusOK)) }},
		{"http 302 not followed", func(t *testing.T) lease.HealthSpec { return healthSpec("http", statusServer(t, http.StatusFound)) }},
		{"exec exit 0 with role env", func(t *testing.T) lease.HealthSpec {
			return healthSpec("exec", "", "sh", "-c", `test "$UNDERSTUDY_ROLE/$UNDERSTUDY_TOKEN" = db/99`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHealth(t, tt.spec(t))
			if err := h.Start(healthCtx(t), healthRC(t)); err != nil {
				t.Fatalf("Start: %v", err)
			}
			if err := h.Stop(healthCtx(t)); err != nil {
				t.Fatalf("Stop: %v", err)
			}
		})
	}
}

func TestHealthCheckStartFailsWithLastFailure(t *testing.T) {
	tests := []struct {
		name string
		spec func(t *testing.T) lease.HealthSpec
		want []string
	}{
		{"tcp refused", func(t *testing.T) lease.HealthSpec { return healthSpec("tcp", closedPort(t)) },
			[]string{"connection refused"}},
		{"http 503", func(t *testing.T) lease.HealthSpec {
			return healthSpec("http", statusServer(t, http.StatusServiceUnavailable))
		}, []string{"503 Service Unavailable", "want 2xx or 3xx"}},
		{"exec exit 3", func(t *testing.T) lease.HealthSpec {
			return healthSpec("exec", "", "sh", "-c", "echo not ready >&2; exit 3")
		}, []string{"exit status 3", "not ready"}},
		{"exec timeout", func(t *testing.T) lease.HealthSpec {
			s := healthSpec("exec", "", "sleep", "30")
			s.Timeout = lease.Duration(50 * time.Millisecond)
			return s
		}, []string{"no success within the 50ms timeout", "deadline exceeded"}},
		{"http hangs", func(t *testing.T) lease.HealthSpec {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
			t.Cleanup(srv.Close)
			s := healthSpec("http", srv.URL)
			s.Timeout = lease.Duration(50 * time.Millisecond)
			return s
		}, []string{"no success within the 50ms timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec(t)
			spec.StartTimeout = lease.Duration(300 * time.Millisecond)
			h := newTestHealth(t, spec)
			err := h.Start(healthCtx(t), healthRC(t))
			if !errors.Is(err, ErrHealthCheckFailed) {
				t.Fatalf("Start error = %v, want ErrHealthCheckFailed", err)
			}
			for _, w := range append(tt.want, "did not pass within 300ms") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Start error = %q, want it to contain %q", err, w)
				}
			}
			h.mu.Lock()
			running := h.done != nil
			h.mu.Unlock()
			if running {
				t.Error("a failed Start left the monitor running")
			}
		})
	}
}

func TestHealthCheckStartCancelled(t *testing.T) {
	h := newTestHealth(t, healthSpec("tcp", closedPort(t)))
	ctx, cancel := context.WithCancel(healthCtx(t))
	time.AfterFunc(100*time.Millisecond, cancel)
	err := h.Start(ctx, healthRC(t))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Start error = %v, want context.Canceled with the last failure", err)
	}
}

func TestHealthCheckStartTwice(t *testing.T) {
	h := newTestHealth(t, healthSpec("tcp", tcpListener(t)))
	if err := h.Start(healthCtx(t), healthRC(t)); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(healthCtx(t), healthRC(t)); !errors.Is(err, ErrHealthRunning) {
		t.Fatalf("second Start = %v, want ErrHealthRunning", err)
	}
}

func TestHealthCheckMonitorFiresAfterThreshold(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "disk full", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	h := newTestHealth(t, healthSpec("http", srv.URL))
	ctx := healthCtx(t)
	if err := h.Start(ctx, healthRC(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	healthy.Store(false)
	select {
	case err := <-h.Failed():
		if !errors.Is(err, ErrHealthCheckFailed) || !strings.Contains(err.Error(), "failed 3 times in a row") ||
			!strings.Contains(err.Error(), "500 Internal Server Error") {
			t.Fatalf("Failed() = %v, want ErrHealthCheckFailed after 3 failures with the status", err)
		}
	case <-ctx.Done():
		t.Fatal("the monitor never reported the failing service")
	}
}

// scriptedProbe answers from results in order and counts the calls; it panics when
// asked more often than scripted, which would mean the monitor outlived its report.
func scriptedProbe(results string, calls *atomic.Int32) func(context.Context, RoleContext) error {
	return func(context.Context, RoleContext) error {
		n := calls.Add(1)
		if int(n) > len(results) {
			panic("probe called after the script ended")
		}
		if results[n-1] == 'F' {
			return errors.New("scripted failure")
		}
		return nil
	}
}

func TestHealthCheckMonitorCountsConsecutiveFailures(t *testing.T) {
	spec := healthSpec("tcp", "127.0.0.1:1")
	spec.Interval = lease.Duration(time.Millisecond)
	h := newTestHealth(t, spec)
	var calls atomic.Int32
	// Start passes at once; two failures are forgiven twice; three in a row report.
	script := "SFFSFFSFFF"
	h.probe = scriptedProbe(script, &calls)
	ctx := healthCtx(t)
	if err := h.Start(ctx, healthRC(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.Failed():
		if !strings.Contains(err.Error(), "failed 3 times in a row; last failure: scripted failure") {
			t.Fatalf("Failed() = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no report")
	}
	if err := h.Stop(ctx); err != nil { // waits for the monitor: the count is final
		t.Fatal(err)
	}
	if got := calls.Load(); int(got) != len(script) {
		t.Errorf("probe called %d times, want %d", got, len(script))
	}
}

func TestHealthCheckStopStopsMonitor(t *testing.T) {
	spec := healthSpec("tcp", "127.0.0.1:1")
	spec.Interval = lease.Duration(time.Millisecond)
	h := newTestHealth(t, spec)
	var calls atomic.Int32
	h.probe = func(context.Context, RoleContext) error { calls.Add(1); return nil }
	ctx := healthCtx(t)
	if err := h.Start(ctx, healthRC(t)); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for calls.Load() < 5 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the monitor does not run")
		}
	}
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	after := calls.Load()
	time.Sleep(20 * time.Millisecond) // 20 intervals: a live monitor would probe again
	if got := calls.Load(); got != after {
		t.Fatalf("probe ran %d times after Stop returned", got-after)
	}
	if err := h.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	// A stopped check can start again (the agent reuses resources across takeovers).
	if err := h.Start(ctx, healthRC(t)); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
}

func TestHealthCheckCheck(t *testing.T) {
	tests := []struct {
		name    string
		spec    lease.HealthSpec
		wantErr string
	}{
		{"tcp needs nothing", healthSpec("tcp", "127.0.0.1:1"), ""},
		{"exec found in PATH", healthSpec("exec", "", "sh", "-c", "true"), ""},
		{"exec missing", healthSpec("exec", "", "/nonexistent/check"), `health.command[0]: "/nonexistent/check": no such file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHealth(t, tt.spec)
			err := h.Check(healthCtx(t))
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Check = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
