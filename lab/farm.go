package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// Defaults of Options.
const (
	DefaultCluster = "lab"
	DefaultTTL     = time.Second
)

// stopTimeout bounds a graceful agent stop (SIGTERM) before the farm uses SIGKILL; an
// agent stops a demo service in milliseconds, so this only matters when one hangs.
const stopTimeout = 5 * time.Second

// Options configure a Farm.
type Options struct {
	// Binary is the path of the `understudy` executable the nodes run. Required.
	Binary string
	// Dir holds etcd's data, node configs, logs and specs. Empty: a new temporary
	// directory that Close removes. A given Dir must be missing or empty (a lab always
	// starts from a fresh etcd); it is created if needed and kept by Close, so its logs
	// can be read afterwards.
	Dir string
	// Cluster name; default "lab".
	Cluster string
	// TTL of the agents' leases; default 1 s (the embedded etcd grants 1 s).
	TTL time.Duration
	// LogFormat of the agents: "console" (default) or "json".
	LogFormat string
	// Log receives the lab's own messages and etcd's warnings; nil discards them.
	Log *zap.Logger
	// Netns runs the farm as a small data centre of network namespaces (needs root):
	// etcd on a control network, tgtd on a SAN with one LUN per role, a client network
	// where each role's floating IP lives, and every node a host on all three. Roles
	// then have iSCSI storage fenced with SCSI-3 reservations, a VIP and a write log.
	// Without it the farm runs on 127.0.0.1 with executables only.
	Netns bool
	// Detection of the roles: lease (default) or fast (Netns only: heartbeats on the
	// client network, the second check over the control network).
	Detection string
	// EtcdMembers is 1 (default) or, in Netns mode, 3: a static cluster with each member
	// in its own namespace on the control network (198.51.100.1-3), so a member, the
	// leader or the quorum can be lost (EtcdKill, EtcdSignal).
	EtcdMembers int
	// Secure (Netns only) runs etcd as production should: clients must speak TLS and
	// present a certificate of the lab's CA, and authentication is on, the agents logging
	// in as the cluster's user made by `understudy etcd-setup` (certificate CN
	// understudy-<cluster>, read-write on the cluster's prefix only); the lab itself and
	// its CLI commands act as root. Certificates are in <dir>/tls.
	Secure bool
}

func (o *Options) defaults() error {
	if o.Binary == "" {
		return fmt.Errorf("%w: Binary: the path of the understudy executable is required", ErrInvalidOption)
	}
	if o.Cluster == "" {
		o.Cluster = DefaultCluster
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < time.Second || o.TTL%time.Second != 0 {
		return fmt.Errorf("%w: TTL %s: want a whole number of seconds, at least 1s", ErrInvalidOption, o.TTL)
	}
	switch o.LogFormat {
	case "":
		o.LogFormat = "console"
	case "console", "json":
	default:
		return fmt.Errorf("%w: LogFormat %q: want console or json", ErrInvalidOption, o.LogFormat)
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	switch o.EtcdMembers {
	case 0:
		o.EtcdMembers = 1
	case 1:
	case 3:
		if !o.Netns {
			return fmt.Errorf("%w: EtcdMembers 3: needs Netns", ErrInvalidOption)
		}
	default:
		return fmt.Errorf("%w: EtcdMembers %d: want 1 or 3", ErrInvalidOption, o.EtcdMembers)
	}
	if o.Secure && !o.Netns {
		return fmt.Errorf("%w: Secure: needs Netns", ErrInvalidOption)
	}
	switch o.Detection {
	case "":
		o.Detection = lease.DetectLease
	case lease.DetectLease:
	case lease.DetectFast:
		if !o.Netns {
			return fmt.Errorf("%w: Detection fast: needs Netns (fencing)", ErrInvalidOption)
		}
	default:
		return fmt.Errorf("%w: Detection %q: want lease or fast", ErrInvalidOption, o.Detection)
	}
	return nil
}

// Farm is a lab cluster: an embedded etcd, a directory, and the agent processes it
// started. Its methods are safe for concurrent use.
type Farm struct {
	opts      Options
	dir       string
	ownDir    bool     // Close removes dir
	endpoints []string // etcd client URLs
	etcd      *Etcd    // loopback mode: etcd in this process
	cli       *clientv3.Client
	store     *lease.Store
	procs     *NetnsProcs // the agents
	http      *http.Client
	netnsFarm // Netns mode only: network, etcd and tgtd processes, SAN

	mu    sync.Mutex // guards nodes, roles, order, specN
	nodes map[string]*node
	roles map[string]Role
	order []string // role names in definition order
	specN int      // spec files written, for unique names

}

// NewFarm starts the farm's etcd (and in Netns mode its network and SAN). Nodes are
// started with StartNode.
func NewFarm(ctx context.Context, opts Options) (_ *Farm, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	f := &Farm{opts: opts, dir: opts.Dir, nodes: map[string]*node{}, roles: map[string]Role{}, procs: NewNetnsProcs(),
		http: &http.Client{Timeout: probeTimeout, Transport: &http.Transport{DisableKeepAlives: true}}}
	if err := f.makeDir(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	cfg := clientv3.Config{DialTimeout: 5 * time.Second, Logger: opts.Log.Named("etcd-client")}
	if opts.Netns {
		if err := f.startNetns(ctx, &cfg); err != nil {
			return nil, err
		}
	} else {
		if f.etcd, err = StartEtcd(ctx, filepath.Join(f.dir, "etcd"), opts.Log); err != nil {
			return nil, err
		}
		f.endpoints = f.etcd.Endpoints()
	}
	cfg.Endpoints = f.endpoints
	if f.cli, err = clientv3.New(cfg); err != nil {
		return nil, fmt.Errorf("lab: etcd client for %v: %w", f.endpoints, err)
	}
	f.store = lease.NewStore(f.cli, lease.Prefix(opts.Cluster), opts.Log)
	if opts.Netns {
		if err := f.waitEtcd(ctx); err != nil {
			return nil, err
		}
		return f, f.enableAuth(ctx)
	}
	return f, nil
}

// makeDir creates the farm's directory: the given one (new or empty), or a new one,
// under /run/usl in Netns mode (short: loop devices record only 63 bytes of a path).
func (f *Farm) makeDir() error {
	if f.dir != "" {
		return emptyDir(f.dir)
	}
	root := ""
	if f.opts.Netns {
		root = LabRoot
		if err := os.MkdirAll(root, 0o700); err != nil {
			return fmt.Errorf("lab: create %s: %w", root, err)
		}
	}
	dir, err := os.MkdirTemp(root, "lab-")
	if err != nil {
		return fmt.Errorf("lab: create farm dir: %w", err)
	}
	f.dir, f.ownDir = dir, true
	return nil
}

// emptyDir creates dir if missing and refuses a directory with files in it: the lab
// would otherwise mix with (or delete) whatever is there.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("lab: create farm dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("lab: farm dir: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%w: Dir %s is not empty: give a new or empty directory", ErrInvalidOption, dir)
	}
	return nil
}

// Dir is the farm's directory: etcd/, nodes/<name>/{agent.yaml,agent.log}, spec files.
func (f *Farm) Dir() string { return f.dir }

// Endpoints are the etcd client URLs.
func (f *Farm) Endpoints() []string { return f.endpoints }

// Cluster is the cluster name.
func (f *Farm) Cluster() string { return f.opts.Cluster }

// TTL is the agents' lease TTL.
func (f *Farm) TTL() time.Duration { return f.opts.TTL }

// Store is a lease.Store on the farm's cluster, for reads the lab makes directly.
func (f *Farm) Store() *lease.Store { return f.store }

// LogPath is the file where node's agent output goes.
func (f *Farm) LogPath(name string) string { return filepath.Join(f.dir, "nodes", name, "agent.log") }

// StartNode starts node name's agent. The first start writes its config (and in Netns
// mode adds its host to the network); later starts (see Restart) reuse it. It returns
// once the process runs, not once it joined: use WaitFor for that.
func (f *Farm) StartNode(ctx context.Context, name string) error {
	if err := lease.CheckNodeName(name); err != nil {
		return fmt.Errorf("lab: start node: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[name]
	if !ok {
		var err error
		if n, err = f.newNode(ctx, name); err != nil {
			return err
		}
		f.nodes[name] = n
	}
	return f.procs.Start(name, n.ns, []string{f.opts.Binary, "agent", "--config", n.config}, nil, n.logPath)
}

// Running reports whether node name's agent process is alive.
func (f *Farm) Running(name string) bool { return f.procs.PID(name) != 0 }

// PID is the process id of node name's agent, 0 when it is not running.
func (f *Farm) PID(name string) int { return f.procs.PID(name) }

// Kill crashes node name: SIGKILL to its agent only, as if the server lost power. The
// role executables die with it through their PDEATHSIG (the exec resource's rule); the
// agent's lease expires after the TTL. Kill returns the moment of the signal, once the
// agent was reaped.
func (f *Farm) Kill(name string) (time.Time, error) { return f.procs.Kill(name) }

// Stop shuts node name down gracefully: SIGTERM, then SIGKILL when ctx ends first.
// A node that already exited (e.g. removed from the cluster) is not an error.
func (f *Farm) Stop(ctx context.Context, name string) error { return f.procs.Stop(ctx, name) }

// Restart stops node name gracefully if it runs, then starts its agent again.
func (f *Farm) Restart(ctx context.Context, name string) error {
	if err := f.Stop(ctx, name); err != nil {
		return err
	}
	return f.StartNode(ctx, name)
}

// Nodes lists the names of the nodes the farm started at least once, sorted.
func (f *Farm) Nodes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.nodes))
	for n := range f.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Close stops every agent the farm started (SIGTERM; SIGKILL after a bound), waits for
// each, stops etcd (and in Netns mode tgtd, then deletes the network and any loop device
// left behind) and removes the directory if the farm created it. Safe to call twice.
func (f *Farm) Close() error {
	errs := []error{f.procs.Close()}
	if f.cli != nil {
		errs = append(errs, f.cli.Close())
		f.cli = nil
	}
	if f.etcd != nil {
		f.etcd.Close()
		f.etcd = nil
	}
	errs = append(errs, f.closeNetns())
	if f.ownDir && f.dir != "" {
		errs = append(errs, os.RemoveAll(f.dir))
		f.dir = ""
	}
	return errors.Join(errs...)
}

// Crash makes node name fail like a server losing power: in Netns mode its links go
// down first (nothing it still has configured answers any more), then its agent gets
// SIGKILL (its services die with it by PDEATHSIG). It returns the moment of the kill.
func (f *Farm) Crash(ctx context.Context, name string) (time.Time, error) {
	if f.net != nil {
		if err := f.net.SetLink(ctx, name, false); err != nil {
			return time.Time{}, err
		}
	}
	return f.Kill(name)
}

// Recover boots a crashed node again: in Netns mode a fresh network (no address its
// dead agent left behind, links up), then its agent.
func (f *Farm) Recover(ctx context.Context, name string) error {
	if f.net != nil {
		if err := f.net.Reboot(ctx, name); err != nil {
			return err
		}
	}
	return f.StartNode(ctx, name)
}

// Signal sends sig to node name's agent only (SIGSTOP/SIGCONT: a stalled server) and
// returns the moment it did.
func (f *Farm) Signal(name string, sig syscall.Signal) (time.Time, error) {
	return f.procs.Signal(name, sig)
}
