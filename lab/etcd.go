package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// Sentinel errors of package lab. Every error the package returns wraps one of them (or
// a context error) with the operation and the object it was about.
var (
	// ErrEtcd: the embedded etcd did not start.
	ErrEtcd = errors.New("lab: embedded etcd")
	// ErrNoNode: the farm has never started a node of that name.
	ErrNoNode = errors.New("lab: no such node")
	// ErrNodeRunning: the node's agent process is already running.
	ErrNodeRunning = errors.New("lab: node already running")
	// ErrNodeStopped: the node's agent process is not running.
	ErrNodeStopped = errors.New("lab: node not running")
	// ErrNoRole: the farm has no role of that name.
	ErrNoRole = errors.New("lab: no such role")
	// ErrWait: a condition was not reached before the context ended.
	ErrWait = errors.New("lab: condition not reached")
	// ErrCLI: an `understudy` command run by the lab failed.
	ErrCLI = errors.New("lab: understudy command failed")
	// ErrUnsupported: the lab needs Linux (process groups, PDEATHSIG).
	ErrUnsupported = errors.New("lab: not supported on this operating system")
	// ErrNoLab: no lab state where one was expected (`lab down`, `lab status`).
	ErrNoLab = errors.New("lab: no such lab")
	// ErrInvalidOption: a bad option; the message names it.
	ErrInvalidOption = errors.New("lab: invalid option")
	// ErrScaleCheck: the scale bench found a broken invariant (holders, tokens, agents).
	ErrScaleCheck = errors.New("lab: scale invariant violated")
)

// Timing of the embedded etcd. With a 100 ms tick and a 500 ms election timeout etcd's
// minimum lease TTL is ceil(1.5 * 500 ms) = 1 s, so the lab can run with TTL 1 s (the
// default 1000 ms election timeout would raise every 1 s lease to 2 s).
const (
	etcdTickMs     = 100
	etcdElectionMs = 500
	// etcdStartTimeout bounds the wait for the member to be ready when ctx has no
	// earlier deadline; a single member on loopback is ready in well under a second.
	etcdStartTimeout = 30 * time.Second
	// etcdStartAttempts retries a start that lost its free port to another process
	// between choosing the port and binding it.
	etcdStartAttempts = 3
)

// Etcd is a single-member etcd server embedded in this process, on 127.0.0.1 only.
type Etcd struct {
	srv      *embed.Etcd
	endpoint string
}

// StartEtcd starts a new embedded etcd with its data in dir (created if missing; the
// lab owns it: a failed attempt's files are removed before the next) on free loopback
// ports, and returns once it serves clients. log receives etcd's warnings and errors;
// nil discards them.
func StartEtcd(ctx context.Context, dir string, log *zap.Logger) (*Etcd, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var err error
	for i := range etcdStartAttempts {
		if i > 0 {
			// A member that failed to start may have written a WAL naming the lost port.
			_ = os.RemoveAll(dir)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("%w: data dir %s: %w", ErrEtcd, dir, err)
		}
		var e *Etcd
		e, err = startEtcdOnce(ctx, dir, log)
		if err == nil {
			return e, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func startEtcdOnce(ctx context.Context, dir string, log *zap.Logger) (*Etcd, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEtcd, err)
	}
	return StartMember(ctx, Member{Dir: dir, Client: loopbackURL(ports[0]), Peer: loopbackURL(ports[1])}, log)
}

// Member is one etcd member a lab runs: a single member (InitialCluster empty) or one of
// a static cluster ("m1=http://a:2380,m2=http://b:2380,...", which must name this
// member's Name and Peer).
type Member struct {
	Name           string  // default "lab"
	Dir            string  // data directory, created if missing
	Client, Peer   url.URL // listen and advertise URLs
	InitialCluster string
	// TLS, when CertFile is set: clients must speak TLS (Client's scheme https) and
	// present a certificate signed by TrustedCAFile (etcd then takes its CN as the user
	// once authentication is on). Peers stay plain: they talk on the lab's own network.
	CertFile, KeyFile, TrustedCAFile string
}

// StartMember starts m with the lab's timings (tick 100 ms, election 500 ms: etcd then
// grants a 1 s TTL) and waits until it is ready (for a cluster member: until a quorum of
// the cluster is up, so start the members concurrently).
func StartMember(ctx context.Context, m Member, log *zap.Logger) (*Etcd, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if m.Name == "" {
		m.Name = "lab"
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: data dir %s: %w", ErrEtcd, m.Dir, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cfg.TickMs, cfg.ElectionMs = etcdTickMs, etcdElectionMs
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{m.Client}, []url.URL{m.Client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{m.Peer}, []url.URL{m.Peer}
	cfg.InitialCluster = m.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	// A lab member is thrown away with its directory: durability buys nothing, and
	// fsync latency on a shared disk would only add noise to the failover timings.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLogger(log))
	if m.CertFile != "" {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: m.CertFile, KeyFile: m.KeyFile,
			TrustedCAFile: m.TrustedCAFile, ClientCertAuth: true}
		// Users get their password checked rarely here (certificates): the cheapest cost
		// keeps a password login, if any, from stalling a 1 s lease.
		cfg.BcryptCost = uint(bcrypt.MinCost)
	}
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: start %s on %s: %w", ErrEtcd, m.Name, m.Client.Host, err)
	}
	wctx, cancel := context.WithTimeout(ctx, etcdStartTimeout)
	defer cancel()
	select {
	case <-srv.Server.ReadyNotify():
		return &Etcd{srv: srv, endpoint: m.Client.String()}, nil
	case err := <-srv.Err():
		srv.Close()
		return nil, fmt.Errorf("%w: serve %s on %s: %w", ErrEtcd, m.Name, m.Client.Host, err)
	case <-wctx.Done():
		srv.Close()
		return nil, fmt.Errorf("%w: wait until %s is ready on %s: %w", ErrEtcd, m.Name, m.Client.Host, wctx.Err())
	}
}

// Done is closed when the member stopped serving (Close, or a fatal error).
func (e *Etcd) Done() <-chan struct{} { return e.srv.Server.StopNotify() }

// etcdLogger keeps etcd's warnings and errors only: its info messages are about raft
// and would drown the lab's own. IncreaseLevel refuses to lower a stricter logger, so it
// is only applied when the logger lets warnings through.
func etcdLogger(log *zap.Logger) *zap.Logger {
	log = log.Named("etcd")
	if log.Core().Enabled(zap.InfoLevel) {
		log = log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	}
	return log
}

// Endpoints returns the client URLs, for clientv3 and for `--etcd-endpoints`.
func (e *Etcd) Endpoints() []string { return []string{e.endpoint} }

// Close stops the member and waits for its goroutines. The data directory is kept; its
// owner removes it.
func (e *Etcd) Close() {
	e.srv.Close()
	<-e.srv.Server.StopNotify()
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago. All n
// listeners are open at once so the ports differ; another process may still take one
// before the caller binds it, which the callers tolerate by retrying or failing loudly.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
