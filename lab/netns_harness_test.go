//go:build linux

package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	"github.com/understudy-ha/understudy/fence/tgtdtest"
	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// A netLab is a cluster whose agents are hosts of a lab.Netns network: etcd and tgtd
// in the core namespace, one agent per node namespace, a client namespace. The test
// process stays in its own namespace and reaches the others through sockets created in
// theirs (lab.Netns.DialContext): etcd for status and history, the client's HTTP GETs.

const (
	netRole    = "web"
	netVIP     = "192.0.2.50"
	netPort    = "8080"
	netCluster = "lab"
	netTTL     = 2 * time.Second
	// netWait bounds each wait of the namespace tests.
	netWait = 30 * time.Second
	// clientTimeout bounds each GET of the client, and its dial.
	clientTimeout = 250 * time.Millisecond
	// envEtcdHelper makes the test binary run the core namespace's etcd (see init).
	envEtcdHelper = "UNDERSTUDY_LAB_ETCD_DIR"
)

type netLab struct {
	t      testing.TB
	ctx    context.Context
	net    *lab.Netns
	agents *lab.NetnsProcs // agents, stopped first
	infra  *lab.NetnsProcs // etcd, stopped after tgtd
	dir    string          // short: loop devices record at most 63 bytes of a path
	tg     *tgtdtest.Target
	store  *lease.Store
	http   *http.Client
	mount  string
}

// requireNetLab skips unless root, ip, tgtd, mkfs.ext4 and /dev/fuse are there, or fails
// with UNDERSTUDY_REQUIRE_ALL=1.
func requireNetLab(t testing.TB) {
	t.Helper()
	missing := ""
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case !onPath("ip"), !onPath("mkfs.ext4"), !onPath(tgtdtest.TgtdPath), !onPath(tgtdtest.TgtadmPath):
		missing = "ip, mkfs.ext4, tgtd and tgtadm"
	case !exists("/dev/fuse"), !exists("/dev/loop-control"):
		missing = "/dev/fuse and /dev/loop-control"
	}
	if missing == "" {
		return
	}
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatalf("namespace lab needs %s (UNDERSTUDY_REQUIRE_ALL=1)", missing)
	}
	t.Skipf("namespace lab needs %s", missing)
}

func onPath(p string) bool { _, err := exec.LookPath(p); return err == nil }
func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// newNetLab builds the network, starts etcd and tgtd, formats the LUN and applies the
// spec; no agent runs yet. Cleanup (also on failure) stops agents, tgtd, etcd, detaches
// our leftover loop devices and deletes the namespaces and files, in that order.
func newNetLab(t testing.TB, ctx context.Context, nodes ...string) *netLab {
	t.Helper()
	requireNetLab(t)
	dir, err := os.MkdirTemp("", "usl-")
	if err != nil {
		t.Fatal(err)
	}
	l := &netLab{t: t, ctx: ctx, dir: dir, agents: lab.NewNetnsProcs(), infra: lab.NewNetnsProcs()}
	t.Cleanup(l.closeBase)
	if l.net, err = lab.NewNetns(ctx, nodes...); err != nil {
		t.Fatal(err)
	}
	l.mount = filepath.Join("/srv/understudy-lab", l.net.Prefix(), netRole)
	t.Cleanup(func() { l.closeInfra() })
	l.startEtcd()
	l.tg = tgtdtest.Start(t, tgtdtest.WithNetns(l.net.SAN().NS),
		tgtdtest.WithPortal(lab.NetnsSANAddr+":3260"), tgtdtest.WithLUNSize(64<<20))
	run(t, ctx, "mkfs.ext4", "-q", "-F", l.tg.BackingFile(1))
	t.Cleanup(l.closeAgents) // runs before tgtd's own cleanup
	for _, n := range nodes {
		l.writeConfig(n)
	}
	l.apply()
	return l
}

func run(t testing.TB, ctx context.Context, argv ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// startEtcd runs this test binary as the core namespace's etcd (see init) and connects
// to it through a socket made in the core namespace.
func (l *netLab) startEtcd() {
	l.t.Helper()
	err := l.infra.Start("etcd", l.net.Etcd().NS, []string{os.Args[0]},
		[]string{envEtcdHelper + "=" + filepath.Join(l.dir, "etcd")}, filepath.Join(l.dir, "etcd.log"))
	if err != nil {
		l.t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{lab.NetnsEtcdEndpoint()},
		DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return l.net.DialContext(l.net.Etcd().NS)(ctx, "tcp", addr)
		})}})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = cli.Close() }) // runs before the etcd process stops
	l.store = lease.NewStore(cli, lease.Prefix(netCluster), zap.NewNop())
	ctx, cancel := context.WithTimeout(l.ctx, netWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := cli.Get(ctx, "health")
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			l.t.Fatalf("etcd in %s not serving: %v\n%s", l.net.Etcd().NS, err, tail(filepath.Join(l.dir, "etcd.log")))
		case <-tick.C:
		}
	}
	// Every GET dials anew (no keep-alive): a user's new connection is what shows the
	// VIP's move. The transport finishes a dial after its request gave up, so the dial
	// has its own bound too.
	dial := l.net.DialContext(l.net.Client().NS)
	l.http = &http.Client{Timeout: clientTimeout, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, clientTimeout)
			defer cancel()
			return dial(ctx, network, addr)
		}}}
}

// agentFile is the agent config file of node (takeover.Config's keys).
type agentFile struct {
	Node         string         `yaml:"node"`
	Cluster      string         `yaml:"cluster"`
	Etcd         map[string]any `yaml:"etcd"`
	TTL          string         `yaml:"ttl"`
	HealthListen string         `yaml:"health_listen"`
	StateDir     string         `yaml:"state_dir"`
	Addresses    []string       `yaml:"addresses"`
}

func (l *netLab) writeConfig(node string) {
	l.t.Helper()
	h, err := l.net.Node(node)
	if err != nil {
		l.t.Fatal(err)
	}
	cfg := agentFile{Node: node, Cluster: netCluster, TTL: netTTL.String(),
		Etcd:         map[string]any{"endpoints": []string{lab.NetnsEtcdEndpoint()}},
		HealthListen: h.Ctl + ":7480", StateDir: filepath.Join(l.dir, node), Addresses: []string{h.Addr}}
	b, err := yaml.Marshal(cfg)
	if err == nil {
		err = os.MkdirAll(cfg.StateDir, 0o700)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(l.dir, node+".yaml"), b, 0o600)
	}
	if err != nil {
		l.t.Fatal(err)
	}
}

// apply puts the spec with `understudy apply`, run in the core namespace as an operator
// on the etcd host would.
func (l *netLab) apply() {
	l.t.Helper()
	url := l.tg.URL(1)
	spec := fmt.Sprintf(`roles:
  - name: %[1]s
    fence: {method: scsi, devices: [[%[2]q]]}
    storage: {device: %[2]q, fstype: ext4, mountpoint: %[3]s}
    exec:
      command: [%[4]s, demo-service, --listen, "0.0.0.0:%[6]s"]
      dir: /
    vip: {address: %[5]s/24, interface: eth0}
    health: {type: http, target: "http://%[5]s:%[6]s/healthz", interval: 200ms}
`, netRole, url, l.mount, binary, netVIP, netPort)
	file := filepath.Join(l.dir, "cluster.yaml")
	if err := os.WriteFile(file, []byte(spec), 0o600); err != nil {
		l.t.Fatal(err)
	}
	run(l.t, l.ctx, "ip", "netns", "exec", l.net.Etcd().NS, binary, "apply", "-f", file,
		"--etcd-endpoints", lab.NetnsEtcdEndpoint(), "--cluster", netCluster)
}

// startAgent runs node's agent in its namespace.
func (l *netLab) startAgent(node string) {
	l.t.Helper()
	h, err := l.net.Node(node)
	if err == nil {
		err = l.agents.Start(node, h.NS, []string{binary, "agent", "--config", filepath.Join(l.dir, node+".yaml")},
			nil, filepath.Join(l.dir, node+".log"))
	}
	if err != nil {
		l.t.Fatal(err)
	}
}

// crash kills node's agent (SIGKILL; its service dies by PDEATHSIG) and takes its eth0
// down, as a server losing power: the VIP it still has configured must stop answering.
// It returns the moment of the kill.
func (l *netLab) crash(node string) time.Time {
	l.t.Helper()
	// The NIC first: a server losing power stops answering ARP at the same instant,
	// and the agent's kill may take a moment to reap.
	if err := l.net.SetLink(l.ctx, node, false); err != nil {
		l.t.Fatal(err)
	}
	at, err := l.agents.Kill(node)
	if err != nil {
		l.t.Fatal(err)
	}
	return at
}

// reboot brings a crashed node back: a fresh network (no leftover VIP), then its agent.
func (l *netLab) reboot(node string) {
	l.t.Helper()
	if err := l.net.Reboot(l.ctx, node); err != nil {
		l.t.Fatal(err)
	}
	l.startAgent(node)
}

// waitStatus polls the cluster (50 ms) until cond holds, bounded by netWait.
func (l *netLab) waitStatus(desc string, cond func(takeover.ClusterStatus) bool) takeover.ClusterStatus {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, netWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last takeover.ClusterStatus
	for {
		v, err := l.store.View(ctx)
		if err == nil {
			last = takeover.BuildStatus(ctx, nil, netCluster, v)
			if cond(last) {
				return last
			}
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			lab.WriteStatus(&b, last, nil, false)
			l.t.Fatalf("%s: not reached in %s (last error %v); status:\n%s", desc, netWait, err, b.String())
		case <-tick.C:
		}
	}
}

// get asks the VIP from the client namespace.
func (l *netLab) get(ctx context.Context) (lab.Reply, error) {
	var rep lab.Reply
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+netVIP+":"+netPort+"/", nil)
	if err != nil {
		return rep, err
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

// waitServed polls the VIP from the client (20 ms) until node answers.
func (l *netLab) waitServed(node string) lab.Reply {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, netWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	var last lab.Reply
	for {
		rep, err := l.get(ctx)
		if err == nil && rep.Node == node {
			return rep
		}
		last, lastErr = rep, err
		select {
		case <-ctx.Done():
			l.t.Fatalf("client: %s never answered from %s (last %+v, %v)", netVIP, node, last, lastErr)
		case <-tick.C:
		}
	}
}
