package lab

// This file is `understudy bench scale` (issue #5): many lightweight in-process agents
// against a 3-member etcd whose members are child processes of this one, so that their
// CPU and memory are theirs alone. It holds the options, the report and the run's order;
// the rest of the bench is in
//
//	scale_farm.go         the agents and the etcd clients they share
//	scale_phases.go       the measured phases: join, claim, steady window, view, failover
//	scale_agent.go        the lightweight agent: incarnations, sessions, reads and watch
//	scale_agent_claim.go  the agent's claims: TryClaim + MarkHolder, strays, node record
//	scale_claimlog.go     what the agents report to the bench, and waits on it
//	scale_check.go        the end-of-run invariant check
//	scale_etcd.go         the members as child processes, their /proc and /metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// Defaults and fixed choices of the scale bench.
const (
	DefaultScaleNodes           = 1000
	DefaultScaleTrials          = 5
	DefaultScaleAgentsPerClient = 50
	DefaultScaleWindow          = 10 * time.Second
	DefaultScaleTimeout         = 2 * time.Minute

	scaleCluster = "scale"
	scaleMembers = 3
	// idWorkers allocate node ids before the start of day. AllocateID is a
	// compare-and-swap on one counter, so concurrent allocators mostly retry: a few at
	// a time is faster than many.
	idWorkers = 4
	// fullViewInterval is how often the real agent re-reads the whole prefix when
	// nothing happens (its loop reconciles at least once a second).
	fullViewInterval = time.Second
	// scalePoll paces the only polling the bench does: the members' readiness and the
	// final check.
	scalePoll = 50 * time.Millisecond
	// scaleProgress is how often a long wait reports how far the agents got.
	scaleProgress = 5 * time.Second
)

// ScaleOptions configure BenchScale. Zero values take the defaults.
type ScaleOptions struct {
	// Binary is the `understudy` executable; the etcd members run `understudy lab etcd`.
	Binary string
	// Dir keeps the members' data and logs (one subdirectory per run); it must be missing
	// or empty. "" = a temporary directory removed at the end.
	Dir string
	// Nodes is the number of agents; default 1000, at least 2.
	Nodes int
	// Roles is the number of roles; default max(1, Nodes/4); at most Nodes-1, so that a
	// standby exists for the failover trials.
	Roles int
	// BaselineNodes, when > 0, repeats the whole measurement on a fresh cluster with that
	// many agents and max(1, Roles*BaselineNodes/Nodes) roles (the CLI's default is 4).
	BaselineNodes int
	// TTL of every agent's lease; default 1 s, whole seconds.
	TTL time.Duration
	// Trials is the number of measured failovers per run; default 5.
	Trials int
	// AgentsPerClient is how many agents share one etcd client; default 50.
	AgentsPerClient int
	// Window is the steady-state measurement window; default 10 s.
	Window time.Duration
	// FullView makes the agents re-read the whole prefix with lease.Store.View after every
	// watch batch and every second, and watch the whole prefix, as the real agent does.
	// Off, they watch roles/ and the spec only and keep the claims from the events.
	FullView bool
	// Timeout bounds each wait (members ready, start of day, one failover); default 2 min.
	Timeout time.Duration
	// Progress receives one line per phase and trial; nil = quiet.
	Progress io.Writer
	// Log receives diagnostics; nil discards them.
	Log *zap.Logger
}

func (o *ScaleOptions) defaults() error {
	if o.Binary == "" {
		return fmt.Errorf("%w: Binary: the path of the understudy executable is required", ErrInvalidOption)
	}
	o.Nodes = cmp.Or(o.Nodes, DefaultScaleNodes)
	o.Roles = cmp.Or(o.Roles, max(1, o.Nodes/4))
	o.TTL = cmp.Or(o.TTL, DefaultTTL)
	o.Trials = cmp.Or(o.Trials, DefaultScaleTrials)
	o.AgentsPerClient = cmp.Or(o.AgentsPerClient, DefaultScaleAgentsPerClient)
	o.Window = cmp.Or(o.Window, DefaultScaleWindow)
	o.Timeout = cmp.Or(o.Timeout, DefaultScaleTimeout)
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	switch {
	case o.Nodes < 2:
		return fmt.Errorf("%w: Nodes %d: want at least 2", ErrInvalidOption, o.Nodes)
	case o.Roles < 1 || o.Roles >= o.Nodes:
		return fmt.Errorf("%w: Roles %d: want 1 to %d (Nodes-1: the failover needs a standby)", ErrInvalidOption, o.Roles, o.Nodes-1)
	case o.BaselineNodes == 1 || o.BaselineNodes < 0:
		return fmt.Errorf("%w: BaselineNodes %d: want 0 (none) or at least 2", ErrInvalidOption, o.BaselineNodes)
	case o.TTL < time.Second || o.TTL%time.Second != 0:
		return fmt.Errorf("%w: TTL %s: want a whole number of seconds, at least 1s", ErrInvalidOption, o.TTL)
	case o.Trials < 1, o.AgentsPerClient < 1, o.Window <= 0, o.Timeout <= 0:
		return fmt.Errorf("%w: Trials %d, AgentsPerClient %d, Window %s, Timeout %s: want all positive",
			ErrInvalidOption, o.Trials, o.AgentsPerClient, o.Window, o.Timeout)
	}
	return nil
}

// ScaleReport is the result of BenchScale: the run at Nodes, then the baseline run.
type ScaleReport struct {
	EtcdMembers int        `json:"etcd_members"`
	CPUs        int        `json:"cpus"`
	Note        string     `json:"note"`
	Runs        []ScaleRun `json:"runs"`
}

// ScaleRun is one measurement on a fresh 3-member etcd.
type ScaleRun struct {
	Nodes    int           `json:"nodes"`
	Roles    int           `json:"roles"`
	Clients  int           `json:"clients"` // etcd clients the agents share
	TTL      time.Duration `json:"ttl_ns"`
	FullView bool          `json:"full_view"`
	Leader   string        `json:"leader"`
	// IDAllocation: AllocateID for every node, idWorkers at a time, before the start
	// of day (a node allocates its id once, at its very first start).
	IDAllocation time.Duration `json:"id_allocation_ns"`
	// Start of day, as in the quickstart: Joined is from starting every agent at once
	// until every node record is in etcd; Claimed from applying the spec to the joined
	// farm until every role is claimed and marked (TryClaim + MarkHolder). Join and Claim
	// are what the two phases cost.
	Joined          time.Duration `json:"join_ns"`
	Claimed         time.Duration `json:"claim_all_ns"`
	ClaimsPerSecond float64       `json:"claims_per_second"` // Roles / Claimed
	Join            Usage         `json:"join"`
	Claim           Usage         `json:"claim"`
	Steady          Usage         `json:"steady"`
	// KeepalivesExpected is Nodes / (TTL/3): every session sends one KeepAliveOnce
	// every third of its TTL.
	KeepalivesExpected float64 `json:"keepalives_expected_per_second"`
	// BytesPerKeepalive: the members' client gRPC bytes (in + out) in the steady window
	// per keepalive request. In a stable farm the window has no other client traffic to
	// speak of; when sessions are being lost (SessionsLost), the churn counts too.
	BytesPerKeepalive float64      `json:"bytes_per_keepalive"`
	View              Cost         `json:"view"`
	Trials            []ScaleTrial `json:"trials"`
	// Failover: from abandoning the holder's session (no revoke: a crash) until another
	// agent's TryClaim of the role succeeded. FailoverMarked: until its MarkHolder did.
	Failover       Stats `json:"failover"`
	FailoverMarked Stats `json:"failover_marked"`
	// Claims counts successful claims in the run; ClaimRaces TryClaims that found the
	// role already held (the herd's cost); ClaimErrors failed TryClaim or MarkHolder
	// calls and held roles lost; SessionsLost sessions that ended, or failed to start,
	// without the bench crashing them.
	Claims     int `json:"claims"`
	ClaimRaces int `json:"claim_races"`
	// Stranded counts claims an agent found under its own lease without holding them
	// (an ambiguous TryClaim failure); the real agent would leave each such role
	// unserved until its lease ends (see strays).
	Stranded     int `json:"stranded_claims"`
	ClaimErrors  int `json:"claim_errors"`
	SessionsLost int `json:"sessions_lost"`
	// Error is why the run stopped early; the figures before it are kept.
	Error string `json:"error,omitempty"`
}

// Usage is what the members, this process and the machine spent over an interval, and
// the traffic the members counted.
type Usage struct {
	Duration           time.Duration `json:"duration_ns"`
	Members            []MemberUsage `json:"members"`
	EtcdCPUSeconds     float64       `json:"etcd_cpu_seconds"`
	EtcdCPUPercent     float64       `json:"etcd_cpu_percent"` // of one core; 100 x CPUs max
	AgentsCPUSeconds   float64       `json:"agents_cpu_seconds"`
	AgentsCPUPercent   float64       `json:"agents_cpu_percent"`
	AgentsRSSBytes     uint64        `json:"agents_rss_bytes"`
	MachineBusyPercent float64       `json:"machine_busy_percent"` // of all CPUs
	Traffic            Traffic       `json:"traffic"`
}

// MemberUsage is one etcd member's share of a Usage.
type MemberUsage struct {
	Name         string  `json:"name"`
	PID          int     `json:"pid"`
	CPUSeconds   float64 `json:"cpu_seconds"` // utime+stime from /proc/PID/stat
	CPUPercent   float64 `json:"cpu_percent"`
	RSSBytes     uint64  `json:"rss_bytes"`      // VmRSS at the end
	PeakRSSBytes uint64  `json:"peak_rss_bytes"` // VmHWM: since the member started
	Keepalives   float64 `json:"keepalives_per_second"`
}

// Traffic is per second, summed over the members, from their /metrics.
type Traffic struct {
	// Keepalives: grpc_server_handled_total{grpc_method="LeaseKeepAlive"}, streams that
	// ended. A KeepAliveOnce is one request on a stream of its own, so this is the
	// request rate. Renewed (etcd_debugging_lease_renewed_total) counts the same on the
	// leader, where followers forward their keepalives.
	Keepalives float64 `json:"keepalives"`
	Renewed    float64 `json:"leases_renewed"`
	// KeepaliveMsgs: grpc_server_msg_received_total{grpc_method="LeaseKeepAlive"}. It is
	// twice Keepalives: the gRPC middleware also counts the receive that ends the stream
	// (io.EOF after the client's CloseSend).
	KeepaliveMsgs  float64 `json:"keepalive_msgs_received"`
	ClientInBytes  float64 `json:"client_received_bytes"`
	ClientOutBytes float64 `json:"client_sent_bytes"`
	PeerSentBytes  float64 `json:"peer_sent_bytes"`
}

// Cost is one full read of the cluster as the real agent does it (lease.Store.View).
type Cost struct {
	Keys    int           `json:"keys"`
	Bytes   int           `json:"bytes"` // keys + values
	Latency time.Duration `json:"latency_ns"`
	// RealAgentBytesPerSecond: Nodes x Bytes, what the real agents read in steady state
	// by re-reading the prefix every second (more after every watch batch).
	RealAgentBytesPerSecond float64 `json:"real_agent_bytes_per_second"`
}

// ScaleTrial is one crash of a role's holder.
type ScaleTrial struct {
	Trial    int           `json:"trial"`
	Role     string        `json:"role"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	OldToken int64         `json:"old_token"`
	NewToken int64         `json:"new_token"`
	Failover time.Duration `json:"failover_ns"`
	Marked   time.Duration `json:"marked_ns"`
}

// BenchScale measures the lease protocol at scale: Nodes lightweight agents (one
// lease.Session each, AllocateID, PutNode, a watch, TryClaim + MarkHolder as the agent
// does it, no resources) against 3 etcd members run as child processes on 127.0.0.1; then
// the same with BaselineNodes agents on a fresh cluster. Linux only (/proc, PDEATHSIG).
func BenchScale(ctx context.Context, opts ScaleOptions) (*ScaleReport, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	dir, cleanup, err := scaleDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rep := &ScaleReport{EtcdMembers: scaleMembers, CPUs: runtime.NumCPU(),
		Note: fmt.Sprintf("the %d etcd members share this machine's %d CPUs with the agents", scaleMembers, runtime.NumCPU())}
	sizes := [][2]int{{opts.Nodes, opts.Roles}}
	if b := opts.BaselineNodes; b > 0 {
		sizes = append(sizes, [2]int{b, min(max(1, opts.Roles*b/opts.Nodes), b-1)})
	}
	var errs []error
	for _, sz := range sizes {
		_, _ = fmt.Fprintf(opts.Progress, "== %d nodes, %d roles, TTL %s\n", sz[0], sz[1], opts.TTL)
		run, err := runScale(ctx, opts, sz[0], sz[1], filepath.Join(dir, fmt.Sprintf("nodes-%d", sz[0])))
		if err != nil {
			// What a run measured before it failed is kept: at scale, how it fails is
			// the finding.
			err = fmt.Errorf("lab: scale run with %d nodes: %w", sz[0], err)
			run.Error, errs = err.Error(), append(errs, err)
			_, _ = fmt.Fprintf(opts.Progress, "%v\n", err)
		}
		rep.Runs = append(rep.Runs, run)
		if ctx.Err() != nil {
			break
		}
	}
	return rep, errors.Join(errs...)
}

// scaleDir returns the bench's directory and what to do with it at the end.
func scaleDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, emptyDir(dir)
	}
	dir, err := os.MkdirTemp("", "understudy-scale-")
	if err != nil {
		return "", nil, fmt.Errorf("lab: create scale dir: %w", err)
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}

// runScale is one run: members up, ids, join, spec applied and every role claimed,
// steady window, view cost, failover trials, invariant check; everything is stopped on
// return, also on error, and what was measured until then is returned with the error.
func runScale(ctx context.Context, o ScaleOptions, nodes, roles int, dir string) (run ScaleRun, err error) {
	run = ScaleRun{Nodes: nodes, Roles: roles, TTL: o.TTL, FullView: o.FullView,
		KeepalivesExpected: float64(nodes) / (o.TTL / 3).Seconds()}
	e, err := startScaleEtcd(ctx, o.Binary, dir, o.Timeout, o.Log)
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	_, _ = fmt.Fprintf(o.Progress, "etcd: %d members up (pids %v), %s\n", scaleMembers, e.pids(), e.note())
	f, err := newScaleFarm(ctx, o, e, nodes, roles)
	if err != nil {
		return run, err
	}
	defer f.stop()
	defer func() { run.Claims, run.ClaimRaces, run.Stranded, run.ClaimErrors, run.SessionsLost = f.rec.counts() }()
	run.Clients = len(f.clients)
	_, _ = fmt.Fprintf(o.Progress, "agents: %d, sharing %d etcd clients (%d per client)\n", nodes, len(f.clients), o.AgentsPerClient)
	if run.IDAllocation, err = f.allocateIDs(ctx); err != nil {
		return run, err
	}
	_, _ = fmt.Fprintf(o.Progress, "ids: %d allocated in %s\n", nodes, lease.CompactDuration(run.IDAllocation))
	if err := f.join(ctx, &run); err != nil {
		return run, err
	}
	if err := f.claimAll(ctx, &run); err != nil {
		return run, err
	}
	if err := f.steady(ctx, &run); err != nil {
		return run, err
	}
	if run.View, err = f.viewCost(ctx); err != nil {
		return run, err
	}
	if err := f.trials(ctx, &run); err != nil {
		return run, err
	}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := f.rec.waitConsistent(cctx, f); err != nil {
		return run, err
	}
	_, _ = fmt.Fprintf(o.Progress, "check: every role has one holder, tokens grow, agents agree with etcd\n")
	return run, nil
}
