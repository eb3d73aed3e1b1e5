package takeover

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// Resource is one step of a role's takeover: fence, storage, exec, vip or health.
//
// Concurrency: a Resource is driven by one owner (the role's Chain); Start and
// Stop are not called concurrently with each other except that Stop may be
// called while a Start is being cancelled through its ctx.
//
// Error contract:
//   - Start must leave nothing behind on error: whatever it did is undone before it
//     returns, so the Chain only ever stops resources whose Start succeeded.
//   - Stop is idempotent (calling it on a stopped or never-started resource is a
//     no-op returning nil). It is best effort until ctx is done, then forceful; it
//     returns only when the resource is really gone (or cannot be removed, then with
//     an error).
type Resource interface {
	// Name is the step name recorded in the event timeline:
	// "fence", "storage", "exec", "vip", "health".
	Name() string
	Start(ctx context.Context, rc RoleContext) error
	Stop(ctx context.Context) error
}

// RoleContext is what a resource knows about the role it is started for.
type RoleContext struct {
	Role   string
	Node   string
	NodeID uint32
	// Token is the fencing token of the claim (its etcd CreateRevision); it only
	// grows, so a resource can hand it to the service to reject stale holders.
	Token int64
	// Log is the role's logger, carrying the role field (resources do not add it
	// again); nil means the resource's own logger, or none.
	Log *zap.Logger
	// FencedMACs are the hardware addresses of the previous holder this takeover
	// fenced: the vip resource lets them still answer for the address.
	FencedMACs []net.HardwareAddr
}

// logger returns rc.Log or a no-op logger, so resources never check for nil.
func (rc RoleContext) logger() *zap.Logger {
	if rc.Log == nil {
		return zap.NewNop()
	}
	return rc.Log
}

// Qualification helpers shared by the resources that run programs (exec, and the
// exec health check): they turn a spec field into something runnable, or into an
// error naming the field and what is wrong.

// resolveCommand resolves argv[0] as os/exec would (a bare name through the agent's
// PATH), checking that it is an executable file. field is the spec field, for
// example "exec.command".
func resolveCommand(field string, argv []string) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", fmt.Errorf("%s: empty; an argv like [\"/usr/bin/myservice\", \"--flag\"] is required", field)
	}
	name := argv[0]
	if !strings.Contains(name, "/") {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("%s[0]: %q: not found in PATH %q", field, name, os.Getenv("PATH"))
		}
		return path, nil
	}
	if !filepath.IsAbs(name) {
		return "", fmt.Errorf("%s[0]: %q: must be an absolute path or a bare name looked up in PATH", field, name)
	}
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s[0]: %q: no such file", field, name)
	case err != nil:
		return "", fmt.Errorf("%s[0]: %q: %w", field, name, err)
	case fi.IsDir():
		return "", fmt.Errorf("%s[0]: %q: is a directory", field, name)
	case fi.Mode()&0o111 == 0:
		return "", fmt.Errorf("%s[0]: %q: not executable (mode %v)", field, name, fi.Mode().Perm())
	}
	return name, nil
}

// account is a resolved user to run a program as.
type account struct {
	name, home string
	uid, gid   uint32
	groups     []uint32 // supplementary groups
}

// lookupAccount resolves the exec.user field: a user name, or a numeric uid known to
// the user database. "" means the agent's own user (nil account).
func lookupAccount(name string) (*account, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if _, numErr := strconv.ParseUint(name, 10, 32); numErr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("exec.user: %q: unknown user: %w", name, err)
	}
	a := &account{name: u.Username, home: u.HomeDir}
	if a.uid, err = parseID(u.Uid); err == nil {
		a.gid, err = parseID(u.Gid)
	}
	if err != nil {
		return nil, fmt.Errorf("exec.user: %q: %w", name, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("exec.user: %q: supplementary groups: %w", name, err)
	}
	for _, g := range gids {
		id, err := parseID(g)
		if err != nil {
			return nil, fmt.Errorf("exec.user: %q: %w", name, err)
		}
		a.groups = append(a.groups, id)
	}
	if euid := os.Geteuid(); euid != 0 && uint32(euid) != a.uid {
		return nil, fmt.Errorf("exec.user: %q: running as another user needs root (agent runs as uid %d)", name, euid)
	}
	return a, nil
}

func parseID(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("id %q is not numeric (POSIX only)", s)
	}
	return uint32(id), nil
}

// checkDir validates exec.dir ("" = the agent's working directory).
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("exec.dir: %q: must be an absolute path", dir)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("exec.dir: %q: no such directory", dir)
	case err != nil:
		return fmt.Errorf("exec.dir: %q: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("exec.dir: %q: not a directory", dir)
	}
	return nil
}

// childEnv is the agent's environment, then the account's HOME/USER/LOGNAME (as
// login would set them), then spec.Env in key order; later entries win (os/exec
// keeps the last of duplicate keys).
func childEnv(acct *account, extra map[string]string) ([]string, error) {
	env := os.Environ()
	if acct != nil {
		env = append(env, "HOME="+acct.home, "USER="+acct.name, "LOGNAME="+acct.name)
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if !validEnvKey(k) {
			return nil, fmt.Errorf("exec.env: key %q is not a variable name (letters, digits, _; not starting with a digit)", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env, nil
}

func validEnvKey(k string) bool {
	for i, r := range k {
		ok := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return k != ""
}
