//go:build linux

package takeover

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

const (
	// ioDrainDelay bounds how long the reap waits for the child's stdout/stderr to
	// close after the child exited: a process that escaped the group (setsid) and
	// kept them open must not block the reap forever (exec.Cmd.WaitDelay).
	ioDrainDelay = 2 * time.Second
	// maxLineBytes: longer output lines are logged in pieces, never dropped.
	maxLineBytes = 64 << 10
	// stderrTailLines and tailLineBytes bound the stderr kept for error messages.
	stderrTailLines = 10
	tailLineBytes   = 256
)

// unixSignals maps the stopSignalNames to signals.
var unixSignals = map[string]unix.Signal{
	"TERM": unix.SIGTERM, "INT": unix.SIGINT, "HUP": unix.SIGHUP, "QUIT": unix.SIGQUIT,
	"USR1": unix.SIGUSR1, "USR2": unix.SIGUSR2, "KILL": unix.SIGKILL,
}

// child is one started process, the leader of its own process group, and the
// goroutine that reaps it.
type child struct {
	pid  int
	log  *zap.Logger // with the pid
	out  *lineWriter // stdout
	errw *lineWriter // stderr, keeps a tail for error messages

	mu     sync.Mutex
	exited bool // guarded by mu: the leader exited, its group must not be signalled any more

	done chan struct{} // closed once the leader is reaped and its output flushed
	err  error         // exec.Cmd.Wait's result; read only after done is closed
}

// spawn starts l as a new process group leader and returns once it runs (or failed
// to start). Its stdout/stderr go line by line to log.
func spawn(l launch, log *zap.Logger) (*child, error) {
	c := &child{
		log:  log,
		out:  &lineWriter{log: log},
		errw: &lineWriter{log: log, keep: stderrTailLines},
		done: make(chan struct{}),
	}
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if a := l.acct; a != nil {
		attr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: a.groups}
	}
	cmd := &exec.Cmd{
		Path: l.path, Args: l.argv, Env: l.env, Dir: l.dir,
		Stdout: c.out, Stderr: c.errw, // not *os.File: exec copies them and Wait waits for the copies
		WaitDelay:   ioDrainDelay,
		SysProcAttr: attr,
	}
	started := make(chan error, 1)
	go c.run(cmd, log, started)
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// run starts cmd and reaps it; it is the child's owner goroutine.
//
// WARNING: Pdeathsig is delivered when the OS *thread* that forked the child exits,
// not when the agent process exits (golang/go#27505). The Go runtime ends a thread
// when a goroutine locked to it returns, and goroutines move between threads, so a
// child forked from an ordinary goroutine can be SIGKILLed while the agent is fine.
// This goroutine is therefore locked to its thread from before the fork until after
// the reap: the thread lives exactly as long as the child, and dies (firing
// Pdeathsig) only with the agent. It costs one parked OS thread per child.
func (c *child) run(cmd *exec.Cmd, log *zap.Logger, started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// Hold the writers until the pid is known, so that every line carries it.
	c.out.mu.Lock()
	c.errw.mu.Lock()
	err := cmd.Start()
	if err == nil {
		c.pid = cmd.Process.Pid
		c.log = log.With(zap.Int("pid", c.pid))
		c.out.log = c.log.With(zap.String("stream", "stdout"))
		c.errw.log = c.log.With(zap.String("stream", "stderr"))
	}
	c.errw.mu.Unlock()
	c.out.mu.Unlock()
	started <- err
	if err != nil {
		return
	}

	// Wait for the exit without reaping: while the leader is a zombie its pid, and
	// so its process group id, cannot be reused, so the group can still be killed
	// safely. Kill what is left of the group, then reap.
	werr := waitExited(c.pid)
	c.mu.Lock()
	c.exited = true
	if werr == nil {
		_ = unix.Kill(-c.pid, unix.SIGKILL) // ESRCH: the group is already empty
	}
	c.mu.Unlock()
	if werr != nil {
		c.log.Warn("exec: waitid failed; reaping without killing the rest of the group", zap.Error(werr))
	}
	err = cmd.Wait()
	if errors.Is(err, exec.ErrWaitDelay) {
		// It exited 0, but a process outside its group still held its output open.
		c.log.Warn("exec: output still open after exit; closed it", zap.Duration("after", ioDrainDelay))
		err = nil
	}
	c.out.flush()
	c.errw.flush()
	c.err = err
	close(c.done)
}

// waitExited blocks until process pid has exited, leaving it a zombie (WNOWAIT).
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// signalGroup sends the named signal (a stopSignalNames entry) to the child's process
// group, unless the leader already exited (then the group is being or was killed).
func (c *child) signalGroup(name string) error {
	sig, ok := unixSignals[name]
	if !ok {
		return fmt.Errorf("takeover: unknown signal %q", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited {
		return nil
	}
	if err := unix.Kill(-c.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("takeover: signal %s to process group %d: %w", name, c.pid, err)
	}
	return nil
}

// deadChild stands for a child that could not be started; err is its "exit status".
func deadChild(log *zap.Logger, err error) *child {
	c := &child{log: log, out: &lineWriter{log: log}, errw: &lineWriter{log: log},
		exited: true, done: make(chan struct{}), err: err}
	close(c.done)
	return c
}

func (c *child) hasExited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited
}

// status describes how the reaped child ended: "exit status 3", "signal: killed".
func (c *child) status() string {
	if c.err == nil {
		return "exit status 0"
	}
	return c.err.Error()
}

// stderrTail formats the last stderr lines for an error message ("" if none).
func (c *child) stderrTail() string {
	lines := c.errw.lastLines()
	if len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("; last stderr: %q", lines)
}

// lineWriter logs what a child writes, one log entry per line. It never drops
// output: writes block the child's pipe until logged, and lines longer than
// maxLineBytes are logged in pieces.
type lineWriter struct {
	mu   sync.Mutex // guards the fields below; held by run while the pid is unknown
	log  *zap.Logger
	buf  []byte   // the incomplete last line
	keep int      // how many last lines to keep in tail
	tail []string // the last keep lines, truncated to tailLineBytes
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	start := 0
	for {
		i := bytes.IndexByte(w.buf[start:], '\n')
		if i < 0 {
			break
		}
		w.emitLocked(w.buf[start : start+i])
		start += i + 1
	}
	for len(w.buf)-start >= maxLineBytes {
		w.emitLocked(w.buf[start : start+maxLineBytes])
		start += maxLineBytes
	}
	w.buf = w.buf[:copy(w.buf, w.buf[start:])]
	return len(p), nil
}

// flush logs an unterminated last line; called after the child is reaped.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.emitLocked(w.buf)
	w.buf = nil
}

func (w *lineWriter) emitLocked(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return
	}
	s := string(line)
	w.log.Info(s)
	if w.keep == 0 {
		return
	}
	if len(s) > tailLineBytes {
		s = s[:tailLineBytes] + "..."
	}
	if len(w.tail) == w.keep {
		w.tail = append(w.tail[:0], w.tail[1:]...)
	}
	w.tail = append(w.tail, s)
}

func (w *lineWriter) lastLines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.tail...)
}
