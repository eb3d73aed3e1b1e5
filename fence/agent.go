//go:build unix

package fence

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// PowerState is what a fence agent's status action reports.
type PowerState int

// Power states.
const (
	PowerUnknown PowerState = iota
	PowerOn
	PowerOff
)

func (p PowerState) String() string {
	switch p {
	case PowerOn:
		return "on"
	case PowerOff:
		return "off"
	}
	return "unknown"
}

// DefaultAgentTimeout bounds one agent invocation when Agent.Timeout is 0.
const DefaultAgentTimeout = 60 * time.Second

// Agent runs a fence-agents program (fence_ipmilan, fence_virsh, ...)
// through the standard stdin protocol: one "key=value" line per option
// (action=..., plug=..., then Args such as ipaddr, login, passwd), stdin
// closed. Exit codes: on/off 0 = success; status 0 = on, 2 = off, anything
// else = error.
//
// Secrets: Args values are written to the agent's stdin only -- never to
// argv (visible in ps), logs or errors; agent output quoted in errors has
// the values of secret-looking Args (pass, secret, community, token, auth)
// replaced by "***".
type Agent struct {
	Path    string            // absolute path of the agent program
	Args    map[string]string // agent options without action/plug
	Timeout time.Duration     // per invocation; default DefaultAgentTimeout
	Log     *zap.Logger
}

// Off powers plug off and then asks status, which must say off: an agent
// that exits 0 without the node being off has not fenced it.
func (a *Agent) Off(ctx context.Context, plug string) error {
	if _, err := a.run(ctx, "off", plug); err != nil {
		return err
	}
	st, err := a.Status(ctx, plug)
	if err != nil {
		return fmt.Errorf("fence: agent %s off plug %q: verify: %w", a.Path, plug, err)
	}
	if st != PowerOff {
		return fmt.Errorf("fence: agent %s off plug %q: %w: status says %v after off", a.Path, plug, ErrAgent, st)
	}
	return nil
}

// On powers plug on (unfence).
func (a *Agent) On(ctx context.Context, plug string) error {
	_, err := a.run(ctx, "on", plug)
	return err
}

// Status asks the power state of plug.
func (a *Agent) Status(ctx context.Context, plug string) (PowerState, error) {
	code, err := a.run(ctx, "status", plug)
	switch {
	case err == nil:
		return PowerOn, nil
	case code == 2:
		return PowerOff, nil
	}
	return PowerUnknown, err
}

// run executes one action and returns the exit code (-1 when the program
// did not exit normally) and an error for any non-zero exit.
func (a *Agent) run(ctx context.Context, action, plug string) (int, error) {
	stdin, err := a.stdin(action, plug)
	if err != nil {
		return -1, err
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultAgentTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.Path)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Own process group, killed as a whole: agents run helpers (ipmitool,
	// ssh) that would otherwise outlive a timeout and keep pipes open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	err = cmd.Run()
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	a.logger().Info("fence agent ran", zap.String("agent", a.Path), zap.String("action", action),
		zap.String("plug", plug), zap.Int("exit", code), zap.Duration("took", time.Since(start)))
	if err == nil {
		return 0, nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %v: %w", time.Since(start).Round(time.Millisecond), ctx.Err())
	}
	// Redact before cutting: a tail that starts inside a secret would keep its end.
	return code, fmt.Errorf("fence: agent %s %s plug %q: %w: exit %d: %w; output: %q", a.Path, action, plug, ErrAgent, code, err, tail(a.redact(out.String()), 512))
}

// stdin renders the option lines; values with line breaks are refused
// (they would inject options).
func (a *Agent) stdin(action, plug string) (string, error) {
	var b strings.Builder
	add := func(k, v string) error {
		if k == "" || strings.ContainsAny(k, "=\r\n") || strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("fence: agent %s: option %q: keys must be non-empty without '=' or line breaks, values without line breaks", a.Path, k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
		return nil
	}
	if err := add("action", action); err != nil {
		return "", err
	}
	if err := add("plug", plug); err != nil {
		return "", err
	}
	keys := make([]string, 0, len(a.Args))
	for k := range a.Args {
		if k == "action" || k == "plug" || k == "port" {
			return "", fmt.Errorf("fence: agent %s: option %q is set by understudy, remove it from args", a.Path, k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := add(k, a.Args[k]); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// IsSecretArg reports whether an option's value must never be shown: its name contains
// pass, secret, community, token or auth (any case). The CLI applies the same rule to
// every key of a spec it prints.
func IsSecretArg(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"pass", "secret", "community", "token", "auth"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func (a *Agent) redact(s string) string {
	for k, v := range a.Args {
		if v != "" && IsSecretArg(k) {
			s = strings.ReplaceAll(s, v, "***")
		}
	}
	return s
}

func (a *Agent) logger() *zap.Logger {
	if a.Log == nil {
		return zap.NewNop()
	}
	return a.Log
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
