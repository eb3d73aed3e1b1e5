package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/understudy-ha/understudy/lease"
)

// CLI runs `understudy ARGS... --etcd-endpoints=... --cluster=...` against the farm and
// returns its standard output. A non-zero exit wraps ErrCLI with the command line, the
// exit status and the standard error. The connection flags go last because cobra takes
// persistent flags after the subcommand. In Netns mode the command runs in the etcd
// namespace, as an operator on the etcd host would run it.
func (f *Farm) CLI(ctx context.Context, args ...string) (string, error) {
	full := append([]string{f.opts.Binary}, args...)
	full = append(full, "--etcd-endpoints="+strings.Join(f.endpoints, ","), "--cluster="+f.opts.Cluster)
	if f.cliConfig != "" {
		full = append(full, "--config="+f.cliConfig) // Secure: TLS as root
	}
	if f.net != nil {
		full = append([]string{"ip", "netns", "exec", f.net.Etcd().NS}, full...)
	}
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = cliEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: understudy %s: %w: %s", ErrCLI, strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// cliEnv is this process's environment without UNDERSTUDY_* variables, so an operator's
// own settings cannot point a lab command at a real cluster.
func cliEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UNDERSTUDY_") {
			env = append(env, kv)
		}
	}
	return env
}

// Apply stores spec with `understudy apply -f FILE`; the file is kept in the farm's
// directory for inspection.
func (f *Farm) Apply(ctx context.Context, spec []byte) error {
	f.mu.Lock()
	f.specN++
	path := filepath.Join(f.dir, fmt.Sprintf("cluster-%d.yaml", f.specN))
	f.mu.Unlock()
	if err := os.WriteFile(path, spec, 0o600); err != nil {
		return fmt.Errorf("lab: write spec: %w", err)
	}
	_, err := f.CLI(ctx, "apply", "-f", path)
	return err
}

// ApplyRoles applies a spec with every defined role (see SpecYAML).
func (f *Farm) ApplyRoles(ctx context.Context, maxRolesPerNode int) error {
	spec, err := f.SpecYAML(maxRolesPerNode)
	if err != nil {
		return err
	}
	return f.Apply(ctx, spec)
}

// History returns the newest events (of role, or all for ""), oldest first, through
// `understudy history -o json`.
func (f *Farm) History(ctx context.Context, role string, limit int) ([]lease.Event, error) {
	args := []string{"history", "-o", "json", fmt.Sprintf("--limit=%d", limit)}
	if role != "" {
		args = append(args, role)
	}
	out, err := f.CLI(ctx, args...)
	if err != nil {
		return nil, err
	}
	var evs []lease.Event
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		return nil, fmt.Errorf("lab: decode history: %w", err)
	}
	return evs, nil
}

// Operator actions, through the CLI as an operator types them.

// NodeAdd runs `understudy node add NAME`.
func (f *Farm) NodeAdd(ctx context.Context, name string) (string, error) {
	return f.CLI(ctx, "node", "add", name)
}

// NodeDrain runs `understudy node drain NAME --wait`: it returns once the node holds
// no role.
func (f *Farm) NodeDrain(ctx context.Context, name string) (string, error) {
	return f.CLI(ctx, "node", "drain", name, "--wait")
}

// NodeRemove runs `understudy node remove NAME`; for a live node it waits until the
// agent left.
func (f *Farm) NodeRemove(ctx context.Context, name string) (string, error) {
	return f.CLI(ctx, "node", "remove", name)
}

// RoleMove runs `understudy role move ROLE --to NODE`; it waits until NODE holds ROLE.
func (f *Farm) RoleMove(ctx context.Context, role, to string) (string, error) {
	return f.CLI(ctx, "role", "move", role, "--to", to)
}
