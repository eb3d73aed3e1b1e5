//go:build linux

package takeover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/understudy-ha/understudy/lease"
)

// shSpec runs script with /bin/sh -c; env adds variables (paths for the script).
func shSpec(script string, env map[string]string) lease.ExecSpec {
	return lease.ExecSpec{
		Command:       []string{"/bin/sh", "-c", script},
		Env:           env,
		StopTimeout:   lease.Duration(5 * time.Second),
		RestartWindow: lease.Duration(time.Minute),
	}
}

// newTestExec returns an Exec with short timings that is stopped at cleanup.
func newTestExec(t *testing.T, spec lease.ExecSpec) *Exec {
	t.Helper()
	e := NewExec(spec, nil)
	e.grace = 50 * time.Millisecond
	e.backoff = 10 * time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return e
}

func testRC(log *zap.Logger) RoleContext {
	return RoleContext{Role: "web", Node: "n1", NodeID: 7, Token: 42, Log: log}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// readFileWhenDone waits for path (scripts write a .tmp and rename it) and returns it.
func readFileWhenDone(t *testing.T, ctx context.Context, path string) string {
	t.Helper()
	var b []byte
	waitFor(t, ctx, path, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil
	})
	return string(b)
}

func readPID(t *testing.T, ctx context.Context, path string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(readFileWhenDone(t, ctx, path)))
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

// procState is the state letter of /proc/<pid>/stat; ok=false if there is no such process.
func procState(pid int) (state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, true
	}
	return b[i+2], true
}

// waitDead waits until pid is gone or a zombie (an orphaned grandchild is reaped by
// init, not by us).
func waitDead(t *testing.T, ctx context.Context, pid int) {
	t.Helper()
	waitFor(t, ctx, fmt.Sprintf("pid %d to die", pid), func() bool {
		s, ok := procState(pid)
		return !ok || s == 'Z' || s == 'X'
	})
}

// The script writes its pid to $PIDF atomically.
const writePID = `echo $$ > "$PIDF.tmp" && mv "$PIDF.tmp" "$PIDF"; `

func TestExecStartStop(t *testing.T) {
	ctx := testCtx(t)
	pidf := filepath.Join(t.TempDir(), "pid")
	e := newTestExec(t, shSpec(writePID+`exec sleep 300`, map[string]string{"PIDF": pidf}))
	if err := e.Start(ctx, testRC(nil)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := readPID(t, ctx, pidf)
	if e.PID() != pid {
		t.Errorf("PID() = %d, want %d", e.PID(), pid)
	}
	if err := e.Start(ctx, testRC(nil)); !errors.Is(err, ErrExecRunning) {
		t.Errorf("second Start = %v, want ErrExecRunning", err)
	}
	if err := e.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, ok := procState(pid); ok {
		t.Errorf("pid %d still exists after Stop (zombie or alive)", pid)
	}
	if e.PID() != 0 {
		t.Errorf("PID() after Stop = %d, want 0", e.PID())
	}
	if err := e.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestExecStopKillsWholeGroup(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		wantKill bool // the stop timeout must run out
	}{
		{
			name:     "group ignores TERM: escalate to SIGKILL",
			script:   writePID + `trap '' TERM; sleep 300 & echo $! > "$GCF.tmp" && mv "$GCF.tmp" "$GCF"; wait`,
			wantKill: true,
		},
		{
			name: "leader exits on TERM, grandchild ignoring TERM is killed with it",
			script: writePID + `(trap '' TERM; exec sleep 300) & echo $! > "$GCF.tmp" && mv "$GCF.tmp" "$GCF"; ` +
				`trap 'exit 0' TERM; wait`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			dir := t.TempDir()
			pidf, gcf := filepath.Join(dir, "pid"), filepath.Join(dir, "grandchild")
			spec := shSpec(tt.script, map[string]string{"PIDF": pidf, "GCF": gcf})
			spec.StopTimeout = lease.Duration(300 * time.Millisecond)
			core, logs := observer.New(zapcore.InfoLevel)
			e := newTestExec(t, spec)
			if err := e.Start(ctx, testRC(zap.New(core))); err != nil {
				t.Fatalf("Start: %v", err)
			}
			pid, gc := readPID(t, ctx, pidf), readPID(t, ctx, gcf)
			if err := e.Stop(ctx); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if _, ok := procState(pid); ok {
				t.Errorf("leader %d still exists after Stop", pid)
			}
			waitDead(t, ctx, gc)
			killed := logs.FilterMessage("exec did not stop in time; killing its process group").Len() > 0
			if killed != tt.wantKill {
				t.Errorf("escalated to SIGKILL = %v, want %v", killed, tt.wantKill)
			}
		})
	}
}

func TestExecStartFailsWhenExitingAtOnce(t *testing.T) {
	tests := []struct {
		name    string
		spec    lease.ExecSpec
		wantIs  error
		wantMsg []string
	}{
		{"exit status and stderr", shSpec(`echo starting; echo "boom: no config" >&2; exit 3`, nil),
			ErrExecExited, []string{"exit status 3", "boom: no config"}},
		{"killed by a signal", shSpec(`kill -9 $$`, nil), ErrExecExited, []string{"signal: killed"}},
		{"missing binary", lease.ExecSpec{Command: []string{"/usr/bin/nope-understudy"}},
			nil, []string{`exec.command[0]: "/usr/bin/nope-understudy": no such file`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			e := newTestExec(t, tt.spec)
			e.grace = 5 * time.Second // long, so a slow machine does not let the exit slip past
			err := e.Start(ctx, testRC(nil))
			if err == nil {
				t.Fatal("Start succeeded, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Start error %v is not %v", err, tt.wantIs)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Start error %q does not contain %q", err, m)
				}
			}
			if e.PID() != 0 {
				t.Errorf("PID() = %d after a failed Start, want 0", e.PID())
			}
		})
	}
}

// A Start cancelled during the grace period leaves nothing running.
func TestExecStartCancelledLeavesNothing(t *testing.T) {
	ctx := testCtx(t)
	pidf := filepath.Join(t.TempDir(), "pid")
	e := newTestExec(t, shSpec(writePID+`exec sleep 300`, map[string]string{"PIDF": pidf}))
	e.grace = time.Minute
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan int)
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if _, err := os.Stat(pidf); err == nil || ctx.Err() != nil {
				cancel()
				return
			}
		}
	}()
	err := e.Start(sctx, testRC(nil))
	<-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v, want context.Canceled", err)
	}
	pid := readPID(t, ctx, pidf)
	if _, ok := procState(pid); ok {
		t.Errorf("pid %d still exists after the cancelled Start", pid)
	}
}

func TestExecRestartPolicy(t *testing.T) {
	ctx := testCtx(t)
	count := filepath.Join(t.TempDir(), "count")
	spec := shSpec(`echo run >> "$COUNT"; sleep 0.3; echo dying >&2; exit 7`, map[string]string{"COUNT": count})
	spec.Restarts = 2
	e := newTestExec(t, spec)
	if err := e.Start(ctx, testRC(nil)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	select {
	case err := <-e.Failed():
		if !errors.Is(err, ErrExecRestartsExhausted) {
			t.Errorf("Failed() = %v, want ErrExecRestartsExhausted", err)
		}
		for _, m := range []string{"exit status 7", "dying", "3 times"} {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("Failed() error %q does not contain %q", err, m)
			}
		}
	case <-ctx.Done():
		t.Fatal("no report on Failed()")
	}
	b, err := os.ReadFile(count)
	if err != nil {
		t.Fatal(err)
	}
	if runs := strings.Count(string(b), "run"); runs != 3 {
		t.Errorf("the executable ran %d times, want 3 (start + 2 restarts)", runs)
	}
	if e.PID() != 0 {
		t.Errorf("PID() = %d after giving up, want 0", e.PID())
	}
	if err := e.Stop(ctx); err != nil {
		t.Errorf("Stop after giving up: %v", err)
	}
}

// Restarts older than the window are forgotten: a child that dies only now and then
// is restarted indefinitely.
func TestExecRestartWindowForgets(t *testing.T) {
	ctx := testCtx(t)
	count := filepath.Join(t.TempDir(), "count")
	spec := shSpec(`echo run >> "$COUNT"; sleep 0.3; exit 1`, map[string]string{"COUNT": count})
	spec.Restarts = 1
	spec.RestartWindow = lease.Duration(100 * time.Millisecond)
	e := newTestExec(t, spec)
	if err := e.Start(ctx, testRC(nil)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitFor(t, ctx, "four runs", func() bool {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "run") >= 4
	})
	select {
	case err := <-e.Failed():
		t.Fatalf("Failed() = %v, want no report", err)
	default:
	}
}

func TestExecEnvironmentAndDir(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "env")
	t.Setenv("UNDERSTUDY_TEST_PARENT", "inherited")
	spec := shSpec(`{ env; echo "PWD_IS=$(pwd)"; } > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"; exec sleep 300`,
		map[string]string{"OUT": out, "FOO": "bar", "UNDERSTUDY_TEST_PARENT": "overridden"})
	spec.Dir = dir
	e := newTestExec(t, spec)
	if err := e.Start(ctx, testRC(nil)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	lines := strings.Split(readFileWhenDone(t, ctx, out), "\n")
	for _, want := range []string{
		"UNDERSTUDY_ROLE=web", "UNDERSTUDY_NODE=n1", "UNDERSTUDY_NODE_ID=7", "UNDERSTUDY_TOKEN=42",
		"FOO=bar", "UNDERSTUDY_TEST_PARENT=overridden", "PWD_IS=" + dir,
	} {
		found := false
		for _, l := range lines {
			found = found || l == want
		}
		if !found {
			t.Errorf("child environment lacks %q", want)
		}
	}
}

func TestExecLogsEveryLine(t *testing.T) {
	ctx := testCtx(t)
	pidf := filepath.Join(t.TempDir(), "pid")
	const n, long = 20000, 150000
	// The pid file is written last: Stop only once everything was written.
	script := fmt.Sprintf(`seq 1 %d; head -c %d /dev/zero | tr '\0' x; echo; echo err-line >&2; `+
		`printf partial; `+writePID+`exec sleep 300`, n, long)
	core, logs := observer.New(zapcore.InfoLevel)
	e := newTestExec(t, shSpec(script, map[string]string{"PIDF": pidf}))
	if err := e.Start(ctx, testRC(zap.New(core).With(zap.String("role", "web")))); err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := readPID(t, ctx, pidf)
	if err := e.Stop(ctx); err != nil { // reaping waits for the output to be logged
		t.Fatalf("Stop: %v", err)
	}
	var stdout []string
	for _, en := range logs.All() {
		f := en.ContextMap()
		if f["pid"] != int64(pid) || f["role"] != "web" {
			continue
		}
		switch f["stream"] {
		case "stdout":
			stdout = append(stdout, en.Message)
		case "stderr":
			if en.Message != "err-line" {
				t.Errorf("stderr line %q, want err-line", en.Message)
			}
		}
	}
	if len(stdout) < n+2 {
		t.Fatalf("logged %d stdout lines, want at least %d", len(stdout), n+2)
	}
	for i := range n {
		if stdout[i] != strconv.Itoa(i+1) {
			t.Fatalf("stdout line %d = %q, want %d", i, stdout[i], i+1)
		}
	}
	rest := stdout[n:]
	if last := rest[len(rest)-1]; last != "partial" {
		t.Errorf("last stdout entry %q, want the unterminated %q", last, "partial")
	}
	if got := len(strings.Join(rest[:len(rest)-1], "")); got != long {
		t.Errorf("long line logged as %d bytes in %d pieces, want %d bytes", got, len(rest)-1, long)
	}
}

func TestExecRunsAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
			t.Fatal("needs root")
		}
		t.Skip("needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	ctx := testCtx(t)
	spec := shSpec(`echo "id $(id -u) $USER"; exec sleep 300`, nil)
	spec.User, spec.Dir = "nobody", "/"
	core, logs := observer.New(zapcore.InfoLevel)
	e := newTestExec(t, spec)
	if err := e.Start(ctx, testRC(zap.New(core))); err != nil {
		t.Fatalf("Start: %v", err)
	}
	want := "id " + u.Uid + " nobody"
	waitFor(t, ctx, "the child's id line", func() bool {
		return logs.FilterMessageSnippet("id ").Len() > 0
	})
	if got := logs.FilterMessageSnippet("id ").All()[0].Message; got != want {
		t.Errorf("child runs as %q, want %q", got, want)
	}
}

func TestExecCheck(t *testing.T) {
	noexec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sleep := []string{"sleep", "1"}
	tests := []struct {
		name    string
		spec    lease.ExecSpec
		wantErr string // substring; "" = no error
	}{
		{"PATH lookup", lease.ExecSpec{Command: sleep}, ""},
		{"missing file", lease.ExecSpec{Command: []string{"/usr/bin/nope"}}, `exec.command[0]: "/usr/bin/nope": no such file`},
		{"not in PATH", lease.ExecSpec{Command: []string{"nope-understudy"}}, `exec.command[0]: "nope-understudy": not found in PATH`},
		{"directory", lease.ExecSpec{Command: []string{"/tmp"}}, `exec.command[0]: "/tmp": is a directory`},
		{"not executable", lease.ExecSpec{Command: []string{noexec}}, "not executable"},
		{"relative path", lease.ExecSpec{Command: []string{"bin/x"}}, "must be an absolute path"},
		{"empty command", lease.ExecSpec{}, "exec.command: empty"},
		{"bad dir", lease.ExecSpec{Command: sleep, Dir: "/nonexistent-dir"}, `exec.dir: "/nonexistent-dir": no such directory`},
		{"bad user", lease.ExecSpec{Command: sleep, User: "no-such-user-xyz"}, `exec.user: "no-such-user-xyz": unknown user`},
		{"bad stop signal", lease.ExecSpec{Command: sleep, StopSignal: "SIGFOO"}, `exec.stop_signal: "SIGFOO" is not one of`},
		{"sig prefix ok", lease.ExecSpec{Command: sleep, StopSignal: "sigint"}, ""},
		{"bad env key", lease.ExecSpec{Command: sleep, Env: map[string]string{"A=B": "x"}}, `exec.env: key "A=B"`},
		{"check passes", lease.ExecSpec{Command: sleep, Check: []string{"/bin/sh", "-c", "exit 0"}}, ""},
		{"check fails", lease.ExecSpec{Command: sleep, Check: []string{"/bin/sh", "-c", "echo no db >&2; exit 4"}},
			`exec.check: "/bin/sh" failed: exit status 4; last stderr: ["no db"]`},
		{"check missing", lease.ExecSpec{Command: sleep, Check: []string{"/nope"}}, `exec.check[0]: "/nope": no such file`},
		{"check times out", lease.ExecSpec{Command: sleep, Check: []string{"/bin/sh", "-c", "sleep 300"}}, "did not finish within"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewExec(tt.spec, nil)
			e.checkTimeout = 300 * time.Millisecond
			err := e.Check(testCtx(t))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Check = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Check = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// A check that times out is killed with its whole process group.
func TestExecCheckTimeoutKillsGroup(t *testing.T) {
	ctx := testCtx(t)
	gcf := filepath.Join(t.TempDir(), "grandchild")
	spec := lease.ExecSpec{Command: []string{"sleep", "1"}, Env: map[string]string{"GCF": gcf},
		Check: []string{"/bin/sh", "-c", `sleep 300 & echo $! > "$GCF.tmp" && mv "$GCF.tmp" "$GCF"; wait`}}
	e := NewExec(spec, nil)
	e.checkTimeout = time.Second
	if err := e.Check(ctx); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("Check = %v, want a timeout", err)
	}
	waitDead(t, ctx, readPID(t, ctx, gcf))
}

// helperEnv makes the test binary act as an agent for TestExecDiesWithAgent.
const helperEnv = "UNDERSTUDY_EXEC_HELPER_PIDFILE"

// TestExecHelperAgent is not a test: run by TestExecDiesWithAgent as a child process,
// it starts an Exec and waits to be killed.
func TestExecHelperAgent(t *testing.T) {
	pidf := os.Getenv(helperEnv)
	if pidf == "" {
		t.Skip("helper process of TestExecDiesWithAgent")
	}
	e := newTestExec(t, shSpec(writePID+`exec sleep 300`, map[string]string{"PIDF": pidf}))
	if err := e.Start(testCtx(t), testRC(nil)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	time.Sleep(time.Minute) // the parent test kills this process long before
}

// When the agent dies (SIGKILL, no cleanup at all), its executable dies with it
// (Pdeathsig), so a standby can take the role without two copies running.
func TestExecDiesWithAgent(t *testing.T) {
	ctx := testCtx(t)
	pidf := filepath.Join(t.TempDir(), "pid")
	agent := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestExecHelperAgent$", "-test.count=1")
	agent.Env = append(os.Environ(), helperEnv+"="+pidf)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	pid := readPID(t, ctx, pidf)
	t.Cleanup(func() { // if Pdeathsig failed, do not leave the sleep behind
		if s, ok := procState(pid); ok && s != 'Z' {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	waitDead(t, ctx, pid)
}
