//go:build linux

package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
	vnetns "github.com/vishvananda/netns"
)

// `understudy lab up|down|status` keep a namespace farm running between commands: `up`
// starts `understudy lab serve` in its own session, which owns the farm (every process
// of it is its child, with PDEATHSIG) until SIGTERM; `down` stops it and then removes
// whatever a crashed owner left, from the farm's lab.json; `status` attaches to it.

// labNameRule: lab names become directory names under LabRoot; short, so loop devices
// still record the farm's path (see LabRoot).
var labNameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)

// readyFile appears in a farm's directory once `lab serve` finished its start of day.
const readyFile = "ready"

// downTimeout bounds the wait for a farm's owner to stop after SIGTERM.
const downTimeout = 30 * time.Second

// LabDir is the directory of the lab called name.
func LabDir(name string) (string, error) {
	if !labNameRule.MatchString(name) {
		return "", fmt.Errorf("%w: lab name %q: want 1 to 16 of a-z, 0-9 and -, starting with a letter or digit", ErrInvalidOption, name)
	}
	return filepath.Join(LabRoot, name), nil
}

// ServeOptions configure Serve.
type ServeOptions struct {
	Binary string
	Name   string
	TTL    time.Duration
	Log    *zap.Logger
}

// Serve builds the lab called o.Name in LabDir(o.Name): the namespace farm with roles
// role-a, role-b, role-c on nodes a, b, c and d, e standing by; then it marks the farm
// ready and keeps it until ctx ends, and removes it.
func Serve(ctx context.Context, o ServeOptions) (err error) {
	dir, err := LabDir(o.Name)
	if err != nil {
		return err
	}
	f, err := NewFarm(ctx, Options{Binary: o.Binary, Dir: dir, TTL: o.TTL, Log: o.Log, Netns: true})
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, f.Close(), os.RemoveAll(dir))
	}()
	sctx, cancel := context.WithTimeout(ctx, 5*DefaultStepTimeout)
	defer cancel()
	if err := f.StartOfDay(sctx); err != nil {
		return err
	}
	if err := f.StartNode(sctx, "e"); err != nil {
		return err
	}
	if _, err := f.WaitFor(sctx, "e standby", func(cs takeover.ClusterStatus) bool { return IsStandby(cs, "e") }); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, readyFile), nil, 0o600); err != nil {
		return fmt.Errorf("lab: mark ready: %w", err)
	}
	<-ctx.Done()
	return nil
}

// Up starts `BINARY lab serve --name NAME` in a session of its own, with its output in
// LabRoot/NAME.log, and returns once the lab is ready (or the server failed: the error
// then carries the log's tail).
func Up(ctx context.Context, binary, name string, ttl time.Duration) error {
	dir, err := LabDir(name)
	if err != nil {
		return err
	}
	if st, err := readState(dir); err == nil {
		if pidAlive(st.PID) {
			return fmt.Errorf("%w: lab %s is already up (pid %d); see `understudy lab status %s`", ErrInvalidOption, name, st.PID, name)
		}
		return fmt.Errorf("%w: lab %s has leftovers of a run that died (pid %d): run `understudy lab down %s` first", ErrInvalidOption, name, st.PID, name)
	}
	if err := os.MkdirAll(LabRoot, 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	logPath := filepath.Join(LabRoot, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(binary, "lab", "serve", "--name", name, "--ttl", ttl.String())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cliEnv()
	// A session of its own: the lab outlives this command and the terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: start %s lab serve: %w", binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(filepath.Join(dir, readyFile)); err == nil {
			return nil // the server keeps running; its exit is reaped by init once we are gone
		}
		select {
		case err := <-exited:
			return fmt.Errorf("lab: lab serve exited (%v) before the lab was ready:\n%s", err, logTail(logPath, 20))
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("lab: wait for lab %s: %w (the server was asked to stop)", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// Down stops the lab in dir and removes everything it had: its owner is asked to stop
// (SIGTERM) and waited for; then, whatever a crashed owner left is removed: processes
// still in the lab's namespaces, the namespaces, loop devices on its files, tgtd's
// socket, the directory. It reports what it removed to w.
func Down(ctx context.Context, dir string, w io.Writer) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if pidAlive(st.PID) && procStart(st.PID) == st.PIDStart {
		_, _ = fmt.Fprintf(w, "stopping the lab's owner, pid %d\n", st.PID)
		_ = syscall.Kill(st.PID, syscall.SIGTERM)
		if !waitGone(ctx, st.PID, downTimeout) {
			_, _ = fmt.Fprintf(w, "pid %d did not stop in %s: SIGKILL\n", st.PID, downTimeout)
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
			waitGone(ctx, st.PID, 5*time.Second)
		}
	}
	return sweep(ctx, dir, st, w)
}

// sweep removes what a lab left behind once its owner is gone; dir "" when only its
// namespaces are known.
func sweep(ctx context.Context, dir string, st LabState, w io.Writer) error {
	var errs []error
	if dir != "" {
		// First: agents stuck exiting on their own FUSE-backed LUNs (see abortFUSE).
		if _, err := DetachLoops(dir + "/"); err != nil {
			errs = append(errs, err)
		}
	}
	if st.Prefix != "" {
		nss, _ := labNamespaces(ctx, st.Prefix+"-")
		for _, ns := range nss {
			for _, pid := range nsPIDs(ctx, ns) {
				_, _ = fmt.Fprintf(w, "kill pid %d left in %s\n", pid, ns)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				waitGone(ctx, pid, reapTimeout)
			}
		}
		if len(nss) > 0 {
			_, _ = fmt.Fprintf(w, "delete namespaces %s\n", strings.Join(nss, " "))
			errs = append(errs, CleanupNetns(ctx, st.Prefix+"-"))
		}
	}
	removeTgtdSocket(st.TgtdCtl)
	if dir == "" {
		return errors.Join(errs...)
	}
	if loops, err := DetachLoops(dir + "/"); err != nil {
		errs = append(errs, err)
	} else if len(loops) > 0 {
		_, _ = fmt.Fprintf(w, "detach %s\n", strings.Join(loops, " "))
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	_ = os.Remove(dir + ".log")
	return errors.Join(errs...)
}

// Labs lists the directories under LabRoot that hold a lab's state file.
func Labs() []string {
	paths, _ := filepath.Glob(filepath.Join(LabRoot, "*", stateFile))
	var dirs []string
	for _, p := range paths {
		dirs = append(dirs, filepath.Dir(p))
	}
	slices.Sort(dirs)
	return dirs
}

func readState(dir string) (LabState, error) {
	var st LabState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, fmt.Errorf("%w: no lab in %s: %w", ErrNoLab, dir, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("lab: %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// pidAlive reports whether pid runs; a zombie (dead, not yet reaped by a parent that
// may never do it) does not.
func pidAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Fields after the command name, which is in parentheses: "pid (comm) S ...".
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// procStart is pid's start time in clock ticks after boot (0 if unknown): with the pid
// it names a process, as a recorded pid alone may have been reused.
func procStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	// After "pid (comm)": state is field 3, starttime field 22.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// waitGone polls until pid is gone, up to bound; it reports whether it is.
func waitGone(ctx context.Context, pid int, bound time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for pidAlive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

func labNamespaces(ctx context.Context, prefix string) ([]string, error) {
	out, err := ipOutput(ctx, "netns", "list")
	if err != nil {
		return nil, err
	}
	var nss []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			nss = append(nss, f[0])
		}
	}
	return nss, nil
}

func nsPIDs(ctx context.Context, ns string) []int {
	out, _ := ipOutput(ctx, "netns", "pids", ns)
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Attach connects to the running lab in dir for reading: its Farm's Status, ServedBy
// and History work; Close only closes the connections.
func Attach(ctx context.Context, dir string) (*Farm, LabState, error) {
	st, err := readState(dir)
	if err != nil {
		return nil, st, err
	}
	n := &Netns{prefix: st.Prefix, handles: map[string]vnetns.NsHandle{}, nodes: map[string]NetnsHost{}}
	f := &Farm{opts: Options{Cluster: st.Cluster}, dir: dir, endpoints: []string{st.Endpoint},
		roles: map[string]Role{}, nodes: map[string]*node{}, procs: NewNetnsProcs(),
		http: &http.Client{Timeout: probeTimeout, Transport: &http.Transport{DisableKeepAlives: true, DialContext: n.DialContext(st.ClientNS)}}}
	f.attached = n
	dial := n.DialContext(st.EtcdNS)
	f.cli, err = clientv3.New(clientv3.Config{Endpoints: f.endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		})}})
	if err != nil {
		return nil, st, fmt.Errorf("lab: etcd client: %w", err)
	}
	f.store = lease.NewStore(f.cli, lease.Prefix(st.Cluster), zap.NewNop())
	if spec, _, err := f.store.Spec(ctx); err == nil && spec != nil {
		for _, r := range spec.Roles {
			if r.Health == nil || r.VIP == nil {
				continue
			}
			if u, err := url.Parse(r.Health.Target); err == nil {
				host, port, _ := net.SplitHostPort(u.Host)
				p, _ := strconv.Atoi(port)
				f.roles[r.Name] = Role{Name: r.Name, VIP: host, Port: p}
				f.order = append(f.order, r.Name)
			}
		}
	}
	return f, st, nil
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// SweepOrphans removes lab namespaces ("usl-<pid>-...") whose creating process is gone:
// what a crashed test or demo left. Namespaces of running labs are left alone.
func SweepOrphans(ctx context.Context, w io.Writer) error {
	nss, err := labNamespaces(ctx, netnsNamePrefix)
	if err != nil {
		return err
	}
	prefixes := map[string]bool{}
	for _, ns := range nss {
		parts := strings.SplitN(strings.TrimPrefix(ns, netnsNamePrefix), "-", 3)
		if len(parts) < 3 {
			continue
		}
		if pid, err := strconv.Atoi(parts[0]); err == nil && !pidAlive(pid) {
			prefixes[netnsNamePrefix+parts[0]+"-"+parts[1]] = true
		}
	}
	var errs []error
	for p := range prefixes {
		errs = append(errs, sweep(ctx, "", LabState{Prefix: p}, w))
	}
	return errors.Join(errs...)
}
