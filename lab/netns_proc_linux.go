//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// NetnsProcs are the processes a lab runs inside its namespaces (`ip netns exec NS
// argv...`; ip execs argv in place, so the process we start IS the program, with our
// process group and PDEATHSIG). Its methods are safe for concurrent use.
//
// `ip netns exec` also gives each process its own mount namespace (a slave of ours), so
// every agent may mount the same mountpoint path, and what it mounts vanishes with it.
type NetnsProcs struct {
	mu    sync.Mutex // guards procs
	procs map[string]*process
	wg    sync.WaitGroup // one per process: the goroutine that reaps it
}

// NewNetnsProcs returns an empty process set.
func NewNetnsProcs() *NetnsProcs { return &NetnsProcs{procs: map[string]*process{}} }

// Start runs argv in namespace ns (empty: in ours, as is) under the given name, its
// output appended to logPath, with env added to ours. A name may be reused once its
// previous process exited.
func (p *NetnsProcs) Start(name, ns string, argv, env []string, logPath string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.procs[name]; old != nil && !old.exited() {
		return fmt.Errorf("%w: %s (pid %d)", ErrNodeRunning, name, old.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("lab: %s: open log: %w", name, err)
	}
	_, _ = fmt.Fprintf(logFile, "=== lab: starting %s in %s at %s\n", name, ns, time.Now().Format(time.RFC3339Nano))
	full := argv
	if ns != "" {
		full = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	// Own group: a terminal's Ctrl-C reaches only us. PDEATHSIG: nothing outlives a
	// crashed lab (see startProcess for the thread caveat).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("lab: %s: start %s: %w", name, strings.Join(full, " "), err)
	}
	var mntNS *os.File
	if ns != "" {
		mntNS = holdMountNS(cmd.Process.Pid)
	}
	proc := &process{cmd: cmd, done: make(chan struct{})}
	p.procs[name] = proc
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		proc.err = cmd.Wait()
		_ = logFile.Close()
		if mntNS != nil {
			// The process is gone; once its children (a role's service, dying by
			// PDEATHSIG) left the namespace too, its mounts may be torn down here.
			waitNSEmpty(mntNS, holdNSTimeout)
			_ = mntNS.Close()
		}
		close(proc.done)
	}()
	return nil
}

// holdMountNS opens the mount namespace `ip netns exec` gives pid, once it differs from
// ours (ip unshares before it execs the program), so the namespace outlives the process.
//
// Why: an agent is the FUSE server of the LUN file under the file system it mounted. If
// it is the last process of its mount namespace, its own exit tears the namespace down,
// unmounting ext4, which writes through the loop device to the FUSE file, whose server
// is the exiting process: it never answers, and the process hangs in the kernel. Held
// here, the namespace survives the agent (like a real server's mounts survive a crashed
// agent), the agent's exit closes /dev/fuse and aborts the connection, and the
// namespace is released after the reap, when the file system only sees I/O errors.
// It returns nil if the process exited first or its namespace never changed.
func holdMountNS(pid int) *os.File {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &self); err != nil {
		return nil
	}
	path := fmt.Sprintf("/proc/%d/ns/mnt", pid)
	deadline := time.Now().Add(holdNSTimeout)
	for time.Now().Before(deadline) {
		f, err := os.Open(path)
		if err != nil {
			return nil // exited already
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) == nil && st.Ino != self.Ino {
			return f
		}
		_ = f.Close()
		time.Sleep(time.Millisecond) // polling a child from outside; bounded by holdNSTimeout
	}
	return nil
}

func (p *NetnsProcs) running(name string) (*process, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	proc, ok := p.procs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoNode, name)
	}
	if proc.exited() {
		return nil, fmt.Errorf("%w: %s", ErrNodeStopped, name)
	}
	return proc, nil
}

// PID is the process id of name, 0 when it is not running.
func (p *NetnsProcs) PID(name string) int {
	proc, err := p.running(name)
	if err != nil {
		return 0
	}
	return proc.cmd.Process.Pid
}

// Exited returns a channel closed once name's current process was reaped.
func (p *NetnsProcs) Exited(name string) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	proc, ok := p.procs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoNode, name)
	}
	return proc.done, nil
}

// ExitErr is the exit status of name's last process: nil for exit code 0, or while it
// runs, or when it never ran.
func (p *NetnsProcs) ExitErr(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	proc, ok := p.procs[name]
	if !ok || !proc.exited() {
		return nil
	}
	return proc.err
}

// Kill sends SIGKILL to name's process only (a crash) and returns the moment of the
// signal once it was reaped.
func (p *NetnsProcs) Kill(name string) (time.Time, error) {
	proc, err := p.running(name)
	if err != nil {
		return time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), reapTimeout)
	defer cancel()
	return signalAndWait(ctx, name, proc, syscall.SIGKILL)
}

// Signal sends sig to name's process and returns the moment it did, without waiting.
func (p *NetnsProcs) Signal(name string, sig syscall.Signal) (time.Time, error) {
	proc, err := p.running(name)
	if err != nil {
		return time.Time{}, err
	}
	at := time.Now()
	if err := signalProcess(proc.cmd.Process.Pid, sig); err != nil {
		return at, fmt.Errorf("lab: %s: signal %v to pid %d: %w", name, sig, proc.cmd.Process.Pid, err)
	}
	return at, nil
}

// Stop shuts name down gracefully: SIGTERM, then SIGKILL when ctx ends first. A process
// that already exited is not an error.
func (p *NetnsProcs) Stop(ctx context.Context, name string) error {
	proc, err := p.running(name)
	if errors.Is(err, ErrNodeStopped) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = signalAndWait(ctx, name, proc, syscall.SIGTERM)
	return err
}

// Close stops every process (SIGTERM, SIGKILL after stopTimeout) and waits for each.
func (p *NetnsProcs) Close() error {
	p.mu.Lock()
	var names []string
	var procs []*process
	for name, proc := range p.procs {
		if !proc.exited() {
			names, procs = append(names, name), append(procs, proc)
		}
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, proc := range procs {
		wg.Go(func() { _, errs[i] = signalAndWait(ctx, names[i], proc, syscall.SIGTERM) })
	}
	wg.Wait()
	p.wg.Wait()
	return errors.Join(errs...)
}

// holdNSTimeout bounds the wait for `ip netns exec` to unshare its mount namespace,
// which takes a few milliseconds.
const holdNSTimeout = 5 * time.Second

// waitNSEmpty polls /proc (bounded) until no process is in mount namespace ns any more,
// so that closing ns is the namespace's last reference: see holdMountNS.
func waitNSEmpty(ns *os.File, bound time.Duration) {
	var st unix.Stat_t
	if unix.Fstat(int(ns.Fd()), &st) != nil {
		return
	}
	want := fmt.Sprintf("mnt:[%d]", st.Ino)
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		paths, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
		if !slices.ContainsFunc(paths, func(p string) bool { l, err := os.Readlink(p); return err == nil && l == want }) {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling other processes; bounded above
	}
}

// loopNameMax is how much of a backing file's name a loop device records.
const loopNameMax = len(unix.LoopInfo64{}.File_name) - 1

// DetachLoops detaches every loop device whose file name (as recorded when it was bound,
// LOOP_GET_STATUS64's lo_file_name, at most 63 bytes) starts with prefix, and returns
// them. It is for the lab's own state directories: a killed agent's LUN loop device
// stays bound (no autoclear) after its mount namespace, and with it the path sysfs
// shows, is gone.
func DetachLoops(prefix string) ([]string, error) {
	if len(prefix) < len("/tmp/x/") || len(prefix) > loopNameMax/2 || !filepath.IsAbs(prefix) {
		return nil, fmt.Errorf("%w: loop prefix %q: want an absolute directory of 7 to %d bytes", ErrInvalidOption, prefix, loopNameMax/2)
	}
	var done []string
	var errs []error
	eachLoop(prefix, func(path, name string, f *os.File, info *unix.LoopInfo64) {
		abortFUSE(info.Device)
		if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil {
			errs = append(errs, fmt.Errorf("lab: detach %s (%s): %w", path, name, err))
			return
		}
		done = append(done, path)
	})
	return done, errors.Join(errs...)
}

// LoopsUnder lists the bound loop devices whose backing file name, as recorded at
// LOOP_SET_FD time (the path sysfs shows may be gone with a mount namespace), starts
// with prefix.
func LoopsUnder(prefix string) []string {
	var paths []string
	eachLoop(prefix, func(path, _ string, _ *os.File, _ *unix.LoopInfo64) { paths = append(paths, path) })
	return paths
}

// eachLoop calls fn, with the device open, for every bound loop device whose backing
// file name starts with prefix.
func eachLoop(prefix string, fn func(path, name string, f *os.File, info *unix.LoopInfo64)) {
	devs, _ := filepath.Glob("/sys/block/loop*")
	for _, d := range devs {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "loop"))
		if err != nil {
			continue
		}
		path := "/dev/loop" + strconv.Itoa(n)
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			continue // no node in /dev, or not ours to open: not a lab device
		}
		info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
		if err == nil { // else ENXIO: not bound
			if name := unix.ByteSliceToString(info.File_name[:]); strings.HasPrefix(name, prefix) {
				fn(path, name, f, info)
			}
		}
		_ = f.Close()
	}
}

// fuseConnections is the fusectl file system; the lab mounts it when needed.
const fuseConnections = "/sys/fs/fuse/connections"

// abortFUSE aborts the FUSE connection behind dev (a loop device's backing file system),
// if it is one. Why: a lab LUN is a file its agent serves over FUSE, under ext4 on a
// loop device. When the agent died with the process holding its mount namespace, the
// namespace's teardown unmounts ext4, whose final flush goes through the loop device to
// the FUSE file, whose server is the dead agent: the exit hangs in the kernel. Aborting
// the connection fails that I/O and lets the exit and the unmount finish.
func abortFUSE(dev uint64) {
	if unix.Major(dev) != 0 {
		return // FUSE file systems have anonymous device numbers
	}
	conn := filepath.Join(fuseConnections, strconv.FormatUint(uint64(unix.Minor(dev)), 10))
	if _, err := os.Stat(fuseConnections + "/."); err == nil {
		if entries, _ := os.ReadDir(fuseConnections); len(entries) == 0 {
			_ = unix.Mount("fusectl", fuseConnections, "fusectl", 0, "")
		}
	}
	_ = os.WriteFile(filepath.Join(conn, "abort"), []byte("1"), 0o200)
}
