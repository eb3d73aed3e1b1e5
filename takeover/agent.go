package takeover

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/understudy-ha/understudy/lease"
)

// Version is stamped into node records; cmd sets it from the build.
var Version = "dev"

// Agent is the node daemon: it keeps a session with etcd, registers the node, qualifies
// it, claims orphaned roles and runs their resources, and gives roles back when told to
// or when it can no longer prove its lease is alive.
//
// Everything that decides is done by the single goroutine running Run (the loop); other
// goroutines only feed it events. Local() and Cluster() may be called from any goroutine.
type Agent struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics
	build   chainBuilder // how a role's resources are made; replaced in tests of failures
	san     *san         // this node's paths to shared LUNs; set once the node id is known

	mu     sync.Mutex // guards local, loopAt, view, store, sess
	local  LocalStatus
	loopAt time.Time // when the loop last completed an iteration (monotonic)
	view   *lease.View
	store  *lease.Store
	sess   *lease.Session

	// loop-owned state
	id         uint32
	held       map[string]*heldRole
	orphaned   map[string]time.Time // role -> when this node saw its claim vanish (monotonic)
	claimedAt  map[string]time.Time // role -> when this node first saw its current claim (monotonic)
	backoff    map[string]time.Time // role -> do not claim before (monotonic), after a failure
	failures   failureLog           // recent failures: backoff and self-cordon (failures.go)
	draining   bool
	lastRec    string // last node record written, to skip identical writes
	roleEvent  chan roleFailure
	unfinished []*Chain // chains of stopped roles whose Stop failed; see finishStops
	// releasing: roles stopped here whose release failed (etcd slow or the demotion
	// deadline near); retried by retryReleases, and never re-adopted as stranded.
	releasing map[string]pendingRelease

	fast fastState // fast detection: heartbeats and early fencing (fastdetect.go)
}

// NewAgent checks the configuration and prepares an agent. It does not touch etcd.
func NewAgent(cfg Config, log *zap.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("takeover: config: %w", err)
	}
	if cfg.Prefix == "" { // configs built in code rather than by LoadConfig
		cfg.Prefix = lease.Prefix(cfg.Cluster)
	}
	if log == nil {
		log = zap.NewNop()
	}
	a := &Agent{
		cfg:       cfg,
		log:       log.With(zap.String("node", cfg.Node)),
		held:      map[string]*heldRole{},
		orphaned:  map[string]time.Time{},
		claimedAt: map[string]time.Time{},
		releasing: map[string]pendingRelease{},
		backoff:   map[string]time.Time{},
		failures:  newFailureLog(),
		roleEvent: make(chan roleFailure, 16),
		fast:      newFastState(),
	}
	a.build = a.buildChain
	if cfg.HeartbeatListen != "" {
		p, err := newAgentProber(cfg)
		if err != nil {
			return nil, fmt.Errorf("takeover: config: %w", err)
		}
		a.fast.probe = p
	}
	a.local = LocalStatus{Node: cfg.Node, State: StateDown, TTL: cfg.TTL}
	a.metrics = newMetrics(func() float64 { return a.Local().KeepaliveAge.Seconds() })
	return a, nil
}

// Gatherer exposes the agent's metrics for the health endpoint.
func (a *Agent) Gatherer() prometheus.Gatherer { return a.metrics.reg }

// Local returns this agent's own state; it never blocks on etcd.
func (a *Agent) Local() LocalStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.local
	l.Roles = make(map[string]int64, len(a.local.Roles))
	for r, t := range a.local.Roles {
		l.Roles[r] = t
	}
	if !a.loopAt.IsZero() {
		l.LoopAge = time.Since(a.loopAt)
	}
	if a.sess != nil {
		l.KeepaliveAge = time.Since(a.sess.LastAck())
		l.TTL = a.sess.TTL()
	}
	return l
}

// Cluster returns the cluster status as of the agent's latest view of etcd.
func (a *Agent) Cluster(ctx context.Context) (ClusterStatus, error) {
	a.mu.Lock()
	v, st := a.view, a.store
	a.mu.Unlock()
	if v == nil {
		return ClusterStatus{}, errors.New("takeover: no view of the cluster yet")
	}
	return BuildStatus(ctx, st, a.cfg.Cluster, v), nil
}

// Run runs the agent until ctx is cancelled (returns nil) or the node is removed
// (returns ErrRemoved). On return every role has been stopped and released.
func (a *Agent) Run(ctx context.Context) error {
	ccfg, err := a.cfg.EtcdClientConfig()
	if err != nil {
		return fmt.Errorf("takeover: etcd client: %w", err)
	}
	// The client's retry warnings repeat what the agent already logs once per state
	// change; keep its errors, in the agent's own log.
	ccfg.Logger = a.log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel))
	// gRPC's reconnect backoff grows to minutes by default; after an etcd outage the
	// agent must be back within a fraction of the TTL (to carry kept claims over, and to
	// stand by again), so cap it.
	ccfg.DialOptions = append(ccfg.DialOptions, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           grpcbackoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: max(a.cfg.TTL/4, 100*time.Millisecond)},
		MinConnectTimeout: a.cfg.TTL,
	}))
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return fmt.Errorf("takeover: etcd client for %v: %w", a.cfg.Etcd.Endpoints, err)
	}
	defer cli.Close()
	st := lease.NewStore(cli, a.cfg.Prefix, a.log)
	a.mu.Lock()
	a.store = st
	a.mu.Unlock()

	if err := a.allocateID(ctx, st); err != nil {
		if ctx.Err() != nil {
			// Stopped (SIGTERM) while etcd was out of reach: a clean exit, as after joining.
			a.log.Info("agent stopped before it could join", zap.Error(err))
			return nil
		}
		return err
	}
	stopHB, err := a.startHeartbeats(ctx)
	if err != nil {
		return err
	}
	defer stopHB()
	a.san = newSAN(a.cfg.Cluster, a.cfg.Node, a.id, a.log)
	defer func() {
		// Logout after every role stopped; bounded by its own context because ctx is done.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.san.Close(cctx); err != nil {
			a.log.Warn("close storage paths", zap.Error(err))
		}
	}()
	// Roles kept running through an etcd outage (keep-running) may still be held when Run
	// returns between sessions; stop them before the SAN paths close under them.
	defer a.finishStops(ctx) // after stopAll: what a cut-short stop left behind
	defer a.stopAll(ctx, st, "agent stopping")
	a.cleanupLeftovers(ctx, st)
	// Short: a node keeping roles through an etcd outage must carry its claims over
	// before their old lease expires once etcd is back.
	wait := newBackoff(100*time.Millisecond, max(a.cfg.TTL/4, 100*time.Millisecond))
	for {
		err := a.runSession(ctx, cli, st)
		if errors.Is(err, ErrRemoved) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("session ended; rejoining as standby", zap.Error(err))
		if !a.waitRetry(ctx, st, wait) {
			return nil
		}
	}
}

// waitRetry waits before the next session. Roles kept running through an etcd outage
// still report failures (above all the fence watchdog), and are stopped meanwhile.
func (a *Agent) waitRetry(ctx context.Context, st *lease.Store, b *backoff) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	for {
		a.touchLoop() // alive, only without etcd: a supervisor's watchdog must not kill us
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case f := <-a.roleEvent:
			a.roleFailed(ctx, st, f)
		}
	}
}

func (a *Agent) allocateID(ctx context.Context, st *lease.Store) error {
	wait := newBackoff(100*time.Millisecond, 2*time.Second)
	for {
		id, err := st.AllocateID(ctx, a.cfg.Node)
		if err == nil {
			a.id = id
			a.log = a.log.With(zap.Uint32("node_id", id))
			a.setLocal(func(l *LocalStatus) { l.NodeID = id })
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("takeover: allocate node id: %w", ctx.Err())
		}
		a.touchLoop()
		a.log.Warn("allocate node id", zap.Error(err))
		if !wait.sleep(ctx) {
			return fmt.Errorf("takeover: allocate node id: %w", ctx.Err())
		}
	}
}

// cleanupLeftovers stops, before the node joins, every resource the spec declares: a
// crashed earlier run may have left a mount or a floating IP behind, and this node holds
// no role yet. Resource stops are idempotent, so on a clean node this does nothing.
func (a *Agent) cleanupLeftovers(ctx context.Context, st *lease.Store) {
	sctx, cancel := context.WithTimeout(ctx, a.cfg.TTL)
	spec, _, err := st.Spec(sctx)
	cancel()
	if err != nil || spec == nil {
		return // no spec yet (or etcd down): nothing we could have run
	}
	for _, r := range spec.Roles {
		chain, _, err := a.build(r)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, rollbackTimeout)
		steps, err := chain.Stop(cctx)
		for _, res := range chain.res {
			if v, ok := res.(*VIP); ok { // Stop of a never-started VIP does nothing
				if _, verr := v.Cleanup(cctx); verr != nil {
					err = errors.Join(err, verr)
				}
			}
		}
		cancel()
		if err != nil {
			a.log.Warn("cleanup of a previous run's leftovers", zap.String("role", r.Name), zap.Any("steps", steps), zap.Error(err))
		}
	}
}

// runSession is one life of the node in the cluster: a fresh lease, registration, and the
// event loop. It returns when the lease is lost or may be lost, after stopping every role.
func (a *Agent) runSession(ctx context.Context, cli *clientv3.Client, st *lease.Store) (err error) {
	gctx, cancel := context.WithTimeout(ctx, a.cfg.TTL) // the retry loop must not hang on a dead etcd
	sess, err := lease.NewSession(gctx, cli, a.cfg.TTL, a.log)
	cancel()
	if err != nil {
		return fmt.Errorf("takeover: new session: %w", err)
	}
	a.mu.Lock()
	a.sess = sess
	a.mu.Unlock()
	a.log.Info("session started", zap.Int64("lease", int64(sess.ID())),
		zap.Duration("ttl", sess.TTL()), zap.Duration("requested_ttl", sess.RequestedTTL()))
	defer func() {
		if a.keepRunning() && ctx.Err() == nil && !errors.Is(err, ErrRemoved) && len(a.held) > 0 {
			// etcd_outage: keep-running. The roles stay up until this node is fenced (the
			// watchdog stops them) or its next session carries their claims over, so
			// the claims must not be revoked with this session.
			a.log.Warn("etcd session ended; keep-running: roles stay up until fenced", zap.Error(err),
				zap.Strings("roles", a.heldNames()))
			sess.Abandon()
		} else {
			a.stopAll(ctx, st, "session ended")
			// Revoke so claims we might still hold vanish now rather than at expiry;
			// bounded by its own context because ctx may already be cancelled.
			cctx, cancel := context.WithTimeout(context.Background(), sess.TTL())
			_ = sess.Close(cctx)
			cancel()
			a.finishStops(ctx) // a demotion's deadline may have cut a stop short
		}
		a.setLocal(func(l *LocalStatus) { l.State, l.EtcdOK, l.Ready = StateDown, false, false })
		a.lastRec = ""
	}()
	l := &loop{a: a, st: st, sess: sess, started: time.Now()}
	return l.run(ctx)
}

func (a *Agent) setLocal(f func(l *LocalStatus)) {
	a.mu.Lock()
	f(&a.local)
	a.mu.Unlock()
}

// keepaliveFresh reports whether the lease is provably alive with margin to spare:
// the last acknowledged keepalive was sent less than TTL - margin ago (monotonic clock).
func (a *Agent) keepaliveFresh(sess *lease.Session) bool {
	return time.Since(sess.LastAck()) < sess.TTL()-a.demoteMargin(sess)
}

// keepRunning reports whether the spec asks active nodes to keep serving through an etcd
// outage (allowed only with SCSI fencing on every role, checked by the spec validation).
func (a *Agent) keepRunning() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.view != nil && a.view.Spec != nil && a.view.Spec.EtcdOutage == lease.OutageKeepRunning
}

// etcdCtx bounds one etcd round trip of the agent to half the TTL. While the node holds
// roles the bound is also the moment it must demote itself (last acknowledged keepalive +
// TTL - margin), so a hung etcd can never keep the loop from demoting in time.
func (a *Agent) etcdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	a.mu.Lock()
	sess := a.sess
	a.mu.Unlock()
	if sess == nil {
		return context.WithTimeout(ctx, a.cfg.TTL)
	}
	deadline := time.Now().Add(sess.TTL() / 2)
	if len(a.held) > 0 && !a.keepRunning() {
		if d := sess.LastAck().Add(sess.TTL() - a.demoteMargin(sess)); d.Before(deadline) {
			deadline = d
		}
	}
	return context.WithDeadline(ctx, deadline)
}

func (a *Agent) demoteMargin(sess *lease.Session) time.Duration {
	m := a.cfg.DemoteMargin
	if m <= 0 || m >= sess.TTL() {
		m = sess.TTL() / 3
	}
	return m
}
