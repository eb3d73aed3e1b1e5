package takeover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// Defaults for the zero values of lease.HealthSpec (ParseSpec normally fills them;
// a HealthSpec built in code may not).
const (
	defaultHealthInterval     = time.Second
	defaultHealthTimeout      = time.Second
	defaultHealthThreshold    = 3
	defaultHealthStartTimeout = 30 * time.Second
	// healthBodyLimit: an HTTP check reads at most this much of the body (so the
	// connection closes cleanly) and ignores it.
	healthBodyLimit = 64 << 10
)

// HealthCheck is the "health" resource: Start waits until the role's service
// answers, then a monitor goroutine owned by the HealthCheck keeps checking until
// Stop. It implements Resource.
//
// One attempt is a TCP connect (tcp), an HTTP GET answered 2xx or 3xx, redirects
// not followed, no proxy (http), or a program exiting 0 (exec, run like exec's
// check: own process group, killed on timeout, with UNDERSTUDY_ROLE, _NODE,
// _NODE_ID and _TOKEN). Each attempt is bounded by spec.Timeout.
type HealthCheck struct {
	spec lease.HealthSpec
	log  *zap.Logger

	interval, timeout, startTimeout time.Duration
	threshold                       int
	client                          *http.Client
	// probe makes one attempt; a field so tests can script results.
	probe func(ctx context.Context, rc RoleContext) error

	failed chan error // buffered 1; see Failed

	opMu sync.Mutex // serialises Start and Stop

	mu     sync.Mutex         // guards the fields below
	cancel context.CancelFunc // stops the monitor; nil when stopped
	done   chan struct{}      // closed when the monitor returned; nil when stopped
}

// NewHealthCheck validates spec and returns the health resource for it. Zero
// durations and threshold take the defaults (1s interval, 1s timeout, 3 failures,
// 30s start timeout). Errors name the field: health.target: "x": want host:port.
// log nil means zap.NewNop().
func NewHealthCheck(spec lease.HealthSpec, log *zap.Logger) (*HealthCheck, error) {
	if log == nil {
		log = zap.NewNop()
	}
	h := &HealthCheck{spec: spec, log: log, failed: make(chan error, 1)}
	errs := []error{h.validTarget()}
	for _, d := range []struct {
		field string
		v     lease.Duration
		def   time.Duration
		dst   *time.Duration
	}{{"interval", spec.Interval, defaultHealthInterval, &h.interval},
		{"timeout", spec.Timeout, defaultHealthTimeout, &h.timeout},
		{"start_timeout", spec.StartTimeout, defaultHealthStartTimeout, &h.startTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("health.%s: %s: want a positive duration", d.field, d.v))
		}
		*d.dst = orDefault(d.v.Std(), d.def)
	}
	if h.threshold = spec.FailureThreshold; h.threshold < 0 {
		errs = append(errs, fmt.Errorf("health.failure_threshold: %d: want at least 1", spec.FailureThreshold))
	} else if h.threshold == 0 {
		h.threshold = defaultHealthThreshold
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	switch spec.Type {
	case lease.HealthTCP:
		h.probe = h.probeTCP
	case lease.HealthHTTP:
		h.client = &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, // every check a fresh connection
				DialContext: (&net.Dialer{}).DialContext},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		h.probe = h.probeHTTP
	case lease.HealthExec:
		h.probe = h.probeExec
	}
	return h, nil
}

// validTarget checks type and the target or command that goes with it.
func (h *HealthCheck) validTarget() error {
	s := h.spec
	switch s.Type {
	case lease.HealthTCP:
		host, port, err := net.SplitHostPort(s.Target)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return fmt.Errorf("health.target: %q: want host:port for type tcp", s.Target)
		}
	case lease.HealthHTTP:
		if u, err := url.Parse(s.Target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("health.target: %q: want an http:// or https:// URL for type http", s.Target)
		}
	case lease.HealthExec:
		if len(s.Command) == 0 || s.Command[0] == "" {
			return errors.New("health.command: required for type exec (an argv like [\"/usr/bin/check\"])")
		}
	default:
		return fmt.Errorf("health.type: %q: want tcp, http or exec", s.Type)
	}
	return nil
}

// Name implements Resource.
func (h *HealthCheck) Name() string { return "health" }

// Failed delivers an error wrapping ErrHealthCheckFailed when the monitor saw
// failure_threshold consecutive failures; the monitor then stops and the agent
// releases the role. The channel is the same for the HealthCheck's lifetime;
// Start discards a stale report.
func (h *HealthCheck) Failed() <-chan error { return h.failed }

// Check is the health part of a node's qualification. The role's service does not
// run on a node that does not hold the role, so nothing is probed: Check only
// verifies what this node needs to run the check (the exec command resolves).
func (h *HealthCheck) Check(context.Context) error {
	if h.spec.Type == lease.HealthExec {
		_, err := resolveCommand("health.command", h.spec.Command)
		return err
	}
	return nil
}

// Start returns once one attempt passed, then starts the monitor. It gives up with
// an error wrapping ErrHealthCheckFailed and the last failure after start_timeout,
// or with ctx's error when ctx ends first. A failed Start leaves nothing running.
func (h *HealthCheck) Start(ctx context.Context, rc RoleContext) error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	running := h.done != nil
	h.mu.Unlock()
	if running {
		return fmt.Errorf("%w: role %q", ErrHealthRunning, rc.Role)
	}
	if err := h.Check(ctx); err != nil {
		return err
	}
	select { // a report from a previous run is stale now
	case <-h.failed:
	default:
	}
	log := rc.logger().With(zap.String("check", h.describe()))
	t0 := time.Now()
	n, err := h.waitPass(ctx, rc, log)
	if err != nil {
		return err
	}
	log.Info("health check passed", zap.Int("attempts", n), zap.Duration("duration", time.Since(t0)))
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h.mu.Lock()
	h.cancel, h.done = cancel, done
	h.mu.Unlock()
	go h.monitor(mctx, rc, log, done)
	return nil
}

// waitPass retries every interval until an attempt passes; it returns the number
// of attempts made.
func (h *HealthCheck) waitPass(ctx context.Context, rc RoleContext, log *zap.Logger) (int, error) {
	sctx, cancel := context.WithTimeout(ctx, h.startTimeout)
	defer cancel()
	var last error
	for n := 1; ; n++ {
		err := h.attempt(sctx, rc)
		if err == nil {
			return n, nil
		}
		if sctx.Err() == nil || last == nil { // keep the real failure, not "cut short"
			last = err
		}
		log.Debug("health check not passing yet", zap.Int("attempt", n), zap.Error(err))
		t := time.NewTimer(h.interval)
		select {
		case <-t.C:
			continue
		case <-sctx.Done():
			t.Stop()
		}
		if ctx.Err() != nil {
			return n, fmt.Errorf("takeover: health %s for role %q: %w; last failure: %v", h.describe(), rc.Role, ctx.Err(), last)
		}
		return n, fmt.Errorf("%w: %s for role %q did not pass within %s (%d attempts); last failure: %v",
			ErrHealthCheckFailed, h.describe(), rc.Role, h.startTimeout, n, last)
	}
}

// monitor checks every interval while the role is held and reports on failed after
// threshold consecutive failures, then returns. It returns when ctx is cancelled.
func (h *HealthCheck) monitor(ctx context.Context, rc RoleContext, log *zap.Logger, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := h.attempt(ctx, rc)
		switch {
		case ctx.Err() != nil:
			return // Stop: the attempt was cut short, not failed
		case err == nil:
			if fails > 0 {
				log.Info("health check recovered", zap.Int("failures", fails))
			}
			fails = 0
			continue
		}
		fails++
		log.Warn("health check failed", zap.Int("failures", fails), zap.Int("threshold", h.threshold), zap.Error(err))
		if fails < h.threshold {
			continue
		}
		ferr := fmt.Errorf("%w: %s for role %q failed %d times in a row; last failure: %v",
			ErrHealthCheckFailed, h.describe(), rc.Role, fails, err)
		log.Error("health check failed; giving up the role", zap.Error(ferr))
		select {
		case h.failed <- ferr:
		default: // an unread report is already pending
		}
		return
	}
}

// Stop stops the monitor and waits for it (an attempt in flight is cancelled).
// Idempotent; the check itself leaves nothing to undo.
func (h *HealthCheck) Stop(context.Context) error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel, h.done = nil, nil
	h.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	<-done
	if h.client != nil {
		h.client.CloseIdleConnections()
	}
	return nil
}

// attempt is one probe bounded by the timeout.
func (h *HealthCheck) attempt(ctx context.Context, rc RoleContext) error {
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	err := h.probe(actx, rc)
	if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no success within the %s timeout: %w", h.timeout, err)
	}
	return err
}

func (h *HealthCheck) describe() string {
	if h.spec.Type == lease.HealthExec {
		return fmt.Sprintf("exec check %q", h.spec.Command)
	}
	return h.spec.Type + " check " + h.spec.Target
}

func (h *HealthCheck) probeTCP(ctx context.Context, _ RoleContext) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", h.spec.Target)
	if err != nil {
		return err
	}
	return c.Close()
}

func (h *HealthCheck) probeHTTP(ctx context.Context, _ RoleContext) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.spec.Target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "understudy-health/"+Version)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, healthBodyLimit))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("GET %s: %s (want 2xx or 3xx)", h.spec.Target, resp.Status)
	}
	return nil
}

// probeExec runs the command like exec's check (own process group, killed with
// it on timeout). Its output is not logged line by line (it would repeat every
// interval); the stderr tail goes into the failure.
func (h *HealthCheck) probeExec(ctx context.Context, rc RoleContext) error {
	path, err := resolveCommand("health.command", h.spec.Command)
	if err != nil {
		return err
	}
	env, _ := childEnv(nil, nil)
	env = append(env, "UNDERSTUDY_ROLE="+rc.Role, "UNDERSTUDY_NODE="+rc.Node,
		"UNDERSTUDY_NODE_ID="+strconv.FormatUint(uint64(rc.NodeID), 10),
		"UNDERSTUDY_TOKEN="+strconv.FormatInt(rc.Token, 10))
	log := h.log
	if log.Core().Enabled(zap.InfoLevel) {
		log = log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	}
	c, err := spawn(launch{path: path, argv: h.spec.Command, env: env}, log)
	if err != nil {
		return fmt.Errorf("start %q: %w", path, err)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		_ = c.signalGroup("KILL")
		<-c.done
		return fmt.Errorf("%q: %w%s", path, ctx.Err(), c.stderrTail())
	}
	if c.err != nil {
		return fmt.Errorf("%q: %s%s", path, c.status(), c.stderrTail())
	}
	return nil
}
