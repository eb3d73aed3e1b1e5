package takeover

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// Defaults for the zero values of lease.ExecSpec (ParseSpec normally fills them;
// an ExecSpec built in code may not) and the Exec's internal timings.
const (
	defaultStopTimeout    = 10 * time.Second
	defaultRestartWindow  = 60 * time.Second
	defaultStopSignal     = "TERM"
	defaultStartGrace     = 100 * time.Millisecond
	defaultRestartBackoff = 200 * time.Millisecond
	maxRestartBackoff     = 5 * time.Second
	defaultCheckTimeout   = 10 * time.Second
)

// Exec is the "exec" resource: it runs the role's executable as a supervised child
// process. It implements Resource.
//
// The child runs in its own process group and gets SIGKILL if the agent dies
// (Pdeathsig). Its environment is the agent's, plus spec.Env, plus UNDERSTUDY_ROLE,
// UNDERSTUDY_NODE, UNDERSTUDY_NODE_ID and UNDERSTUDY_TOKEN. Every line it writes to
// stdout/stderr is logged on RoleContext.Log (or NewExec's logger if nil), which is
// expected to carry the role field: message = the line, fields pid and stream.
// Nothing is dropped by this package, so give it a logger without sampling (NewLogger).
//
// Process group rule: when the main process exits, for whatever reason, every
// process left in its group is killed with SIGKILL before the exit is reported. A
// service that needs its helpers to shut down gracefully must wait for them before
// it exits itself. Forking daemons (main process exits at once) are not supported:
// run them in the foreground. Limits: if the agent itself dies, Pdeathsig kills the
// main process only, and its helpers survive unless it takes them down; processes
// that leave the group (setsid) are never tracked.
//
// While the role is held the Exec restarts a dead child up to spec.Restarts times
// within spec.RestartWindow (0 restarts: none), then reports on Failed.
type Exec struct {
	spec lease.ExecSpec
	log  *zap.Logger

	// Timings, unexported so tests can shorten them.
	grace        time.Duration // Start: the child must survive this long
	backoff      time.Duration // first restart delay, doubled per recent restart
	checkTimeout time.Duration // bound of the spec.Check command

	failed chan error // buffered 1; see Failed

	opMu sync.Mutex // serialises Start and Stop

	mu      sync.Mutex         // guards the fields below
	l       launch             // what Start resolved; the stop fields are used by Stop
	cur     *child             // current child of the running Exec; nil when stopped
	cancel  context.CancelFunc // stops the supervisor; nil when stopped
	supDone chan struct{}      // closed when the supervisor returned; nil when stopped
}

// NewExec returns an exec resource for spec. The spec is checked by Check and
// Start, not here. log nil means zap.NewNop().
func NewExec(spec lease.ExecSpec, log *zap.Logger) *Exec {
	if log == nil {
		log = zap.NewNop()
	}
	return &Exec{
		spec:         spec,
		log:          log,
		grace:        defaultStartGrace,
		backoff:      defaultRestartBackoff,
		checkTimeout: defaultCheckTimeout,
		failed:       make(chan error, 1),
	}
}

// Name implements Resource.
func (e *Exec) Name() string { return "exec" }

// Failed delivers an error wrapping ErrExecRestartsExhausted when the child died
// and the local restarts are used up; the agent then releases the role. The
// channel is the same for the Exec's lifetime; Start discards a stale report.
func (e *Exec) Failed() <-chan error { return e.failed }

// PID is the process id of the running child, 0 when none is running.
func (e *Exec) PID() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == nil || e.cur.hasExited() {
		return 0
	}
	return e.cur.pid
}

// Start starts the executable for rc and returns once it has survived a short grace
// period (or with ctx's error, the child stopped, if ctx ends first). A child that
// exits at once fails Start with ErrExecExited, its exit status and its last stderr
// lines. On success a supervising goroutine owns the child until Stop.
func (e *Exec) Start(ctx context.Context, rc RoleContext) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	e.mu.Lock()
	running := e.supDone != nil
	e.mu.Unlock()
	if running {
		return fmt.Errorf("%w: role %q", ErrExecRunning, rc.Role)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("takeover: exec start for role %q: %w", rc.Role, err)
	}
	l, err := e.prepare(&rc)
	if err != nil {
		return err
	}
	select { // a report from a previous run is stale now
	case <-e.failed:
	default:
	}
	log := rc.Log // the agent's role logger already carries the role (and token)
	if log == nil {
		log = e.log
	}
	c, err := spawn(l, log)
	if err != nil {
		return fmt.Errorf("takeover: exec start %q for role %q: %w", l.path, rc.Role, err)
	}
	if err := e.confirm(ctx, l, c); err != nil {
		return err
	}
	log.Info("exec started", zap.Int("pid", c.pid), zap.String("path", l.path))
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	e.mu.Lock()
	e.l, e.cur, e.cancel, e.supDone = l, c, cancel, done
	e.mu.Unlock()
	go e.supervise(sctx, l, c, log, done)
	return nil
}

// Check is the exec part of a node's qualification: without starting the service it
// verifies that exec.command resolves to an executable file, that exec.dir,
// exec.user, exec.env and exec.stop_signal are usable, and that exec.check (if set)
// exits 0 within the check timeout (or ctx). The check command runs like the
// service (dir, user, env, own process group) and its group is killed on timeout.
// Errors name the spec field: exec.command[0]: "/usr/bin/nope": no such file.
func (e *Exec) Check(ctx context.Context) error {
	l, err := e.prepare(nil)
	if err != nil {
		return err
	}
	if len(e.spec.Check) == 0 {
		return nil
	}
	if l.path, err = resolveCommand("exec.check", e.spec.Check); err != nil {
		return err
	}
	l.argv = e.spec.Check
	ctx, cancel := context.WithTimeout(ctx, e.checkTimeout)
	defer cancel()
	c, err := spawn(l, e.log.With(zap.String("check", l.path)))
	if err != nil {
		return fmt.Errorf("exec.check: start %q: %w", l.path, err)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		if err := c.signalGroup("KILL"); err != nil {
			e.log.Warn("exec check kill failed", zap.Error(err))
		}
		<-c.done
		return fmt.Errorf("exec.check: %q did not finish within %s: %w%s", l.path, e.checkTimeout, ctx.Err(), c.stderrTail())
	}
	if c.err != nil {
		return fmt.Errorf("exec.check: %q failed: %s%s", l.path, c.status(), c.stderrTail())
	}
	return nil
}

// confirm waits for the start grace period; it reaps the child when it exits or when
// ctx ends first, so a failed Start leaves nothing behind.
func (e *Exec) confirm(ctx context.Context, l launch, c *child) error {
	t := time.NewTimer(e.grace)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.done:
		return fmt.Errorf("%w: %q (pid %d): %s%s", ErrExecExited, l.path, c.pid, c.status(), c.stderrTail())
	case <-ctx.Done():
		_ = e.stopChild(ctx, l, c) // ctx is done: signal, then SIGKILL at once
		return fmt.Errorf("takeover: exec start %q (pid %d): %w", l.path, c.pid, ctx.Err())
	}
}

// Stop stops the supervisor, then sends the stop signal to the child's process group,
// waits up to the stop timeout or until ctx is done, then SIGKILLs the group. It
// returns once the child is reaped: after SIGKILL it waits regardless of ctx, since
// returning earlier would let the agent unmount the storage under a live process
// (only a process in uninterruptible sleep survives SIGKILL for long). Idempotent.
func (e *Exec) Stop(ctx context.Context) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	e.mu.Lock()
	cancel, done := e.cancel, e.supDone
	e.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	<-done // the supervisor only blocks in selects on its ctx: this is prompt
	e.mu.Lock()
	c, l := e.cur, e.l
	e.mu.Unlock()
	err := e.stopChild(ctx, l, c)
	e.mu.Lock()
	e.cur, e.cancel, e.supDone = nil, nil, nil
	e.mu.Unlock()
	return err
}

// stopChild stops one child as Stop describes.
func (e *Exec) stopChild(ctx context.Context, l launch, c *child) error {
	if c.hasExited() {
		<-c.done
		return nil
	}
	log := c.log
	log.Info("exec stopping", zap.String("signal", l.stopSignal), zap.Duration("timeout", l.stopTimeout))
	if err := c.signalGroup(l.stopSignal); err != nil {
		log.Warn("exec stop signal failed", zap.Error(err))
	}
	t := time.NewTimer(l.stopTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		log.Info("exec stopped", zap.String("status", c.status()))
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	log.Warn("exec did not stop in time; killing its process group")
	if err := c.signalGroup("KILL"); err != nil {
		log.Error("exec SIGKILL failed; waiting for the process anyway", zap.Error(err))
	}
	<-c.done
	log.Info("exec killed", zap.String("status", c.status()))
	return nil
}

// supervise owns the child while the role is held: it restarts a child that died
// and reports on Failed when the restarts within the window are used up. It returns
// when ctx is cancelled (Stop) or after reporting.
func (e *Exec) supervise(ctx context.Context, l launch, c *child, log *zap.Logger, done chan struct{}) {
	defer close(done)
	var recent []time.Time // restart times within the window
	var wait *backoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
		}
		if ctx.Err() != nil {
			return // Stop raced with the death: Stop owns the rest
		}
		now := time.Now()
		recent = pruneBefore(recent, now.Add(-l.restartWindow))
		if len(recent) >= l.restarts {
			err := fmt.Errorf("%w: %q died %d times within %s; last: %s%s", ErrExecRestartsExhausted,
				l.path, len(recent)+1, l.restartWindow, c.status(), c.stderrTail())
			log.Error("exec failed; restarts exhausted", zap.Error(err))
			select {
			case e.failed <- err:
			default: // an unread report is already pending
			}
			return
		}
		if len(recent) == 0 { // healthy for a whole window: start the backoff afresh
			wait = newBackoff(e.backoff, maxRestartBackoff)
		}
		recent = append(recent, now)
		log.Warn("exec died; restarting", zap.Int("pid", c.pid), zap.String("status", c.status()),
			zap.Int("restart", len(recent)), zap.Int("max", l.restarts), zap.Duration("backoff", wait.cur))
		if !wait.sleep(ctx) { // the documented restart backoff, bounded by ctx (Stop)
			return
		}
		c = e.respawn(l, log)
	}
}

// respawn starts a new child and makes it current. A failed start is returned as an
// already-dead child so the supervisor counts it like any other death.
func (e *Exec) respawn(l launch, log *zap.Logger) *child {
	c, err := spawn(l, log)
	if err != nil {
		log.Error("exec restart failed", zap.Error(err))
		c = deadChild(log, err)
	} else {
		log.Info("exec restarted", zap.Int("pid", c.pid))
	}
	e.mu.Lock()
	e.cur = c
	e.mu.Unlock()
	return c
}

// pruneBefore drops the times before cutoff from the sorted ts.
func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(cutoff) })
	return append(ts[:0], ts[i:]...)
}

// launch is everything needed to start (and stop) one child, resolved from the spec.
type launch struct {
	path          string   // resolved executable
	argv          []string // argv[0] as written in the spec
	env           []string
	dir           string
	acct          *account // nil: run as the agent's user
	stopSignal    string   // canonical name without "SIG"
	stopTimeout   time.Duration
	restarts      int
	restartWindow time.Duration
}

// prepare resolves the spec; errors name the spec field. With rc nil (Check) the
// UNDERSTUDY_* role variables are left out.
func (e *Exec) prepare(rc *RoleContext) (launch, error) {
	s := e.spec
	path, err := resolveCommand("exec.command", s.Command)
	if err != nil {
		return launch{}, err
	}
	if err := checkDir(s.Dir); err != nil {
		return launch{}, err
	}
	acct, err := lookupAccount(s.User)
	if err != nil {
		return launch{}, err
	}
	sig, err := canonicalSignal(s.StopSignal)
	if err != nil {
		return launch{}, err
	}
	env, err := childEnv(acct, s.Env)
	if err != nil {
		return launch{}, err
	}
	if rc != nil {
		env = append(env,
			"UNDERSTUDY_ROLE="+rc.Role,
			"UNDERSTUDY_NODE="+rc.Node,
			"UNDERSTUDY_NODE_ID="+strconv.FormatUint(uint64(rc.NodeID), 10),
			"UNDERSTUDY_TOKEN="+strconv.FormatInt(rc.Token, 10))
	}
	l := launch{
		path: path, argv: s.Command, env: env, dir: s.Dir, acct: acct, stopSignal: sig,
		stopTimeout:   orDefault(time.Duration(s.StopTimeout), defaultStopTimeout),
		restarts:      max(s.Restarts, 0),
		restartWindow: orDefault(time.Duration(s.RestartWindow), defaultRestartWindow),
	}
	return l, nil
}

// stopSignalNames are the values exec.stop_signal accepts ("SIG" prefix optional).
var stopSignalNames = []string{"TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "KILL"}

// canonicalSignal normalises exec.stop_signal: "" -> TERM, "sigint" -> INT.
func canonicalSignal(name string) (string, error) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")
	if n == "" {
		return defaultStopSignal, nil
	}
	if !slices.Contains(stopSignalNames, n) {
		return "", fmt.Errorf("exec.stop_signal: %q is not one of %s", name, strings.Join(stopSignalNames, ", "))
	}
	return n, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
