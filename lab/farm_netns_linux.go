//go:build linux

package lab

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// LabRoot holds the directories of namespace farms. Short on purpose: a loop device
// records only 63 bytes of its file's path, and DetachLoops matches on the farm's.
const LabRoot = "/run/usl"

// stateFile, in a namespace farm's directory, tells `lab down` what to remove after the
// process that built the farm died without cleaning up.
const stateFile = "lab.json"

// LabState is what a namespace farm records about itself in its directory (lab.json).
type LabState struct {
	Prefix   string    `json:"prefix"`    // namespace name prefix
	PID      int       `json:"pid"`       // the process that owns the farm
	PIDStart uint64    `json:"pid_start"` // its start time (/proc/PID/stat), against pid reuse
	TgtdCtl  int       `json:"tgtd_ctl"`  // tgtd's control port (its IPC socket's name)
	Cluster  string    `json:"cluster"`   // cluster name in etcd
	Endpoint string    `json:"endpoint"`  // etcd client URL, reachable from the etcd namespace
	EtcdNS   string    `json:"etcd_ns"`   // where to run CLI commands
	ClientNS string    `json:"client_ns"` // where the VIPs are reachable from
	Started  time.Time `json:"started"`   // wall clock, display only
}

// netnsFarm is what a Farm has in Netns mode.
type netnsFarm struct {
	net      *Netns
	attached *Netns      // Attach: another process's lab network, only dialled into
	infra    *NetnsProcs // etcd and tgtd, stopped after the agents
	san      *san
	state    LabState
	members  []etcdMember // guarded by Farm.mu
	secure   *secureLab   // Options.Secure: the CA and root's certificate
	// etcdCreds are the agents' etcd TLS settings (Secure), cliConfig the config file
	// the lab's CLI commands read them from.
	etcdCreds etcdConfig
	cliConfig string
}

// startNetns builds the network, runs etcd in its namespace and tgtd in the SAN's, and
// points the farm's etcd client (cfg) and HTTP client at them through sockets made in
// the etcd and client namespaces.
func (f *Farm) startNetns(ctx context.Context, cfg *clientv3.Config) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: Netns: the namespace lab needs root (network namespaces, tgtd, loop devices)", ErrInvalidOption)
	}
	f.infra = NewNetnsProcs()
	if f.net, err = NewNetns(ctx); err != nil {
		return err
	}
	etcdNS := f.net.Etcd().NS
	f.state = LabState{Prefix: f.net.Prefix(), PID: os.Getpid(), PIDStart: procStart(os.Getpid()), Cluster: f.opts.Cluster,
		Endpoint: NetnsEtcdEndpoint(), EtcdNS: etcdNS, ClientNS: f.net.Client().NS, Started: time.Now()}
	if err := f.writeState(); err != nil {
		return err
	}
	// The cluster key of the agents' heartbeats (used when Detection is fast).
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(filepath.Join(f.dir, "heartbeat.key"), key, 0o600); err != nil {
		return fmt.Errorf("lab: heartbeat key: %w", err)
	}
	if f.opts.Secure {
		if err := f.prepareTLS(); err != nil {
			return err
		}
		if cfg.TLS, err = f.rootTLS(); err != nil {
			return err
		}
	}
	if err := f.startEtcdMembers(ctx); err != nil {
		return err
	}
	dialEtcd := f.net.DialContext(etcdNS)
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return dialEtcd(ctx, "tcp", addr)
	}))
	f.http.Transport = &http.Transport{DisableKeepAlives: true, DialContext: f.net.DialContext(f.net.Client().NS)}
	if f.san, err = startSAN(ctx, f.infra, f.net.SAN().NS, NetnsSANAddr, filepath.Join(f.dir, "san"), f.net.Prefix()); err != nil {
		return err
	}
	f.state.TgtdCtl = f.san.ctl
	return f.writeState()
}

func (f *Farm) writeState() error {
	b, err := json.MarshalIndent(f.state, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(f.dir, stateFile), append(b, '\n'), 0o600)
	}
	if err != nil {
		return fmt.Errorf("lab: write %s: %w", stateFile, err)
	}
	return nil
}

// waitEtcd polls until the etcd process serves, bounded by etcdStartTimeout.
func (f *Farm) waitEtcd(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, etcdStartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		gctx, gcancel := context.WithTimeout(ctx, time.Second)
		_, err := f.cli.Get(gctx, "health")
		gcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: etcd in %s serving: %w (last: %v; see %s)", ErrEtcd, f.state.EtcdNS, ctx.Err(), err,
				filepath.Join(f.dir, "etcd.log"))
		case <-tick.C:
		}
	}
}

// closeNetns stops tgtd and etcd, removes tgtd's socket, detaches the loop devices the
// agents left and deletes the network. Safe to call twice.
func (f *Farm) closeNetns() error {
	if f.attached != nil {
		f.attached.closeHandles()
	}
	if f.net == nil {
		return nil
	}
	// tgtd shuts down on SIGTERM only once it has no targets; the lab's own target and
	// files go away with it anyway.
	if f.infra.PID("tgtd") != 0 {
		_, _ = f.infra.Kill("tgtd")
	}
	errs := []error{f.infra.Close()}
	if f.san != nil {
		removeTgtdSocket(f.san.ctl)
	}
	if _, err := DetachLoops(f.dir + "/"); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, f.net.Close())
	f.net = nil
	return errors.Join(errs...)
}

// Net is the farm's network in Netns mode (nil otherwise).
func (f *Farm) Net() *Netns { return f.net }
