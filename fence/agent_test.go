//go:build unix

package fence

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const secret = "s3cr3t-Passw0rd"

func testAgent(t *testing.T, mode string) (*Agent, string, string) {
	t.Helper()
	dir := t.TempDir()
	record, state := filepath.Join(dir, "record"), filepath.Join(dir, "state")
	if err := os.WriteFile(state, []byte("on\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path, err := filepath.Abs("testdata/fence_test_agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{"record": record, "state": state, "ipaddr": "127.0.0.1", "login": "admin", "passwd": secret}
	if mode != "" {
		args["mode"] = mode
	}
	return &Agent{Path: path, Args: args, Timeout: 5 * time.Second}, record, state
}

func TestAgent(t *testing.T) {
	tests := []struct {
		name      string
		mode      string
		run       func(ctx context.Context, a *Agent) error
		wantErr   error
		wantState string
	}{
		{"off verified", "", func(ctx context.Context, a *Agent) error { return a.Off(ctx, "node-a") }, nil, "off"},
		{"on", "", func(ctx context.Context, a *Agent) error { return a.On(ctx, "node-a") }, nil, "on"},
		{"off fails", "failoff", func(ctx context.Context, a *Agent) error { return a.Off(ctx, "node-a") }, ErrAgent, "on"},
		{"off not confirmed by status", "lie", func(ctx context.Context, a *Agent) error { return a.Off(ctx, "node-a") }, ErrAgent, "on"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a, record, state := testAgent(t, tc.mode)
			err := tc.run(ctx, a)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the password: %v", err)
			}
			if s, _ := os.ReadFile(state); strings.TrimSpace(string(s)) != tc.wantState {
				t.Errorf("state = %q, want %q", s, tc.wantState)
			}
			rec, err := os.ReadFile(record)
			if err != nil {
				t.Fatal(err)
			}
			first := strings.SplitN(string(rec), "--\n", 2)[0]
			for _, line := range []string{"action=", "plug=node-a\n", "ipaddr=127.0.0.1\n", "login=admin\n", "passwd=" + secret + "\n"} {
				if !strings.Contains(first, line) {
					t.Errorf("agent stdin %q lacks %q", first, line)
				}
			}
		})
	}
}

func TestAgentStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, _, state := testAgent(t, "")
	for _, tc := range []struct {
		name  string
		state string
		want  PowerState
		err   bool
	}{{"on", "on", PowerOn, false}, {"off", "off", PowerOff, false}, {"unknown", "broken", PowerUnknown, true}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(state, []byte(tc.state+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := a.Status(ctx, "node-a")
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("Status = %v, %v; want %v, err %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestAgentTimeoutKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, record, _ := testAgent(t, "hang")
	a.Timeout = 2 * time.Second // long enough for a loaded machine to start the shell and its child
	start := time.Now()
	err := a.On(ctx, "node-a")
	if !errors.Is(err, ErrAgent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrAgent + deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	b, err := os.ReadFile(record + ".child")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The agent's child (sleep) must be gone too: poll briefly, as the
	// kernel reaps it asynchronously (it is re-parented to init).
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("agent child %d survived the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgentRejectsInjection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tests := []struct {
		name string
		args map[string]string
		plug string
	}{
		{"newline in value", map[string]string{"login": "admin\naction=on"}, "a"},
		{"newline in plug", nil, "a\nplug=b"},
		{"equals in key", map[string]string{"a=b": "c"}, "a"},
		{"action in args", map[string]string{"action": "on"}, "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{Path: "/bin/true", Args: tc.args}
			if err := a.On(ctx, tc.plug); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// alive reports whether pid exists and is not a zombie (a killed child
// re-parented to a container's init may stay a zombie for a while).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no procfs: trust kill(0)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) == 0 || f[0] != "Z"
}
