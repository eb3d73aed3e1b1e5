//go:build linux

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/understudy-ha/understudy/lease"
)

// A Netns lab is a small switched network of network namespaces, so that agents run as
// separate hosts and a floating IP really moves between them:
//
//	<prefix>-sw       the switch: bridge br0 with one veth port per host (no address)
//	<prefix>-core     192.0.2.1/24    where etcd and tgtd run
//	<prefix>-client   192.0.2.100/24  where a user's requests come from
//	<prefix>-<node>   192.0.2.<10+i>/24 on eth0, one per node (i from 0)
//
// Only 192.0.2.0/24 (TEST-NET-1) is used and nothing is created or changed in the
// caller's namespace: every veth is created inside a lab namespace with `ip -n`, and the
// switch has no route anywhere. The prefix is "usl-<pid>-<random>", so leftovers of a
// crashed run are recognisable (CleanupNetns) and runs never collide.

// Addresses of the lab's fixed hosts, and the first node's host number.
const (
	NetnsCoreAddr   = "192.0.2.1"
	NetnsClientAddr = "192.0.2.100"
	netnsCoreHost   = 1
	netnsFirstNode  = 10
	netnsClientHost = 100 // also the end of the nodes' range
	netnsMaxNodes   = netnsClientHost - netnsFirstNode
	netnsPrefixLen  = "/24"
	netnsNamePrefix = "usl-"
	ipTimeout       = 20 * time.Second
)

// NetnsHost is one host of the lab network.
type NetnsHost struct {
	NS   string           // namespace name, for `ip -n` and `ip netns exec`
	Addr string           // IPv4 address on eth0, without prefix length
	MAC  net.HardwareAddr // eth0's MAC
	port string           // its veth peer on the switch
}

// Netns is a lab network; see the comment at the top of this file. Its methods are safe
// for concurrent use.
type Netns struct {
	prefix string
	sw     string
	core   NetnsHost
	client NetnsHost
	nodes  map[string]NetnsHost

	mu      sync.Mutex // guards handles, closed
	handles map[string]netns.NsHandle
	closed  bool
}

// NewNetns builds the switch, core, client and one namespace per node, every link up,
// and returns once every eth0 has carrier. On error everything created is deleted.
func NewNetns(ctx context.Context, nodes ...string) (_ *Netns, err error) {
	if len(nodes) == 0 || len(nodes) > netnsMaxNodes {
		return nil, fmt.Errorf("%w: nodes: %d given, want 1 to %d", ErrInvalidOption, len(nodes), netnsMaxNodes)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	n := &Netns{prefix: fmt.Sprintf("%s%d-%s", netnsNamePrefix, os.Getpid(), hex.EncodeToString(rnd[:])),
		nodes: map[string]NetnsHost{}, handles: map[string]netns.NsHandle{}}
	n.sw = n.prefix + "-sw"
	n.core = NetnsHost{NS: n.prefix + "-core", Addr: NetnsCoreAddr, MAC: labMAC(netnsCoreHost), port: "pcore"}
	n.client = NetnsHost{NS: n.prefix + "-client", Addr: NetnsClientAddr, MAC: labMAC(netnsClientHost), port: "pclient"}
	for i, name := range nodes {
		if err := lease.CheckNodeName(name); err != nil {
			return nil, fmt.Errorf("%w: nodes[%d]: %w", ErrInvalidOption, i, err)
		}
		if _, dup := n.nodes[name]; dup {
			return nil, fmt.Errorf("%w: nodes[%d]: %q given twice", ErrInvalidOption, i, name)
		}
		host := netnsFirstNode + i
		n.nodes[name] = NetnsHost{NS: n.prefix + "-" + name, Addr: fmt.Sprintf("192.0.2.%d", host),
			MAC: labMAC(host), port: fmt.Sprintf("p%d", host)}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()
	if err := n.addSwitch(ctx); err != nil {
		return nil, err
	}
	for _, h := range n.hosts() {
		if err := n.addHost(ctx, h); err != nil {
			return nil, err
		}
	}
	for _, h := range n.hosts() {
		if err := n.waitCarrier(ctx, h); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// labMAC is a locally administered MAC ending in the host number, so neighbour tables
// read like the address plan.
func labMAC(host int) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, byte(host)} }

func (n *Netns) hosts() []NetnsHost {
	hs := []NetnsHost{n.core, n.client}
	for _, h := range n.nodes {
		hs = append(hs, h)
	}
	return hs
}

func (n *Netns) addSwitch(ctx context.Context) error {
	if err := ipCmd(ctx, "netns", "add", n.sw); err != nil {
		return err
	}
	// Snooping off: the lab is about ARP, and late IGMP joins must not drop anything.
	if err := ipCmd(ctx, "-n", n.sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		return err
	}
	return ipCmd(ctx, "-n", n.sw, "link", "set", "br0", "up")
}

// addHost creates h's namespace and its eth0, a veth whose peer is created directly in
// the switch namespace (never in ours) and enslaved to br0.
func (n *Netns) addHost(ctx context.Context, h NetnsHost) error {
	steps := [][]string{
		{"netns", "add", h.NS},
		{"-n", h.NS, "link", "add", "eth0", "address", h.MAC.String(), "type", "veth", "peer", "name", h.port, "netns", n.sw},
		{"-n", n.sw, "link", "set", h.port, "master", "br0", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "addr", "add", h.Addr + netnsPrefixLen, "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// waitCarrier polls until h's eth0 reports LOWER_UP (veth carrier comes up
// asynchronously after `link set up`).
func (n *Netns) waitCarrier(ctx context.Context, h NetnsHost) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := ipOutput(ctx, "-n", h.NS, "-o", "link", "show", "dev", "eth0")
		if err == nil && strings.Contains(out, "LOWER_UP") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s eth0 carrier: %w (last: %v %s)", ErrWait, h.NS, ctx.Err(), err, out)
		case <-tick.C:
		}
	}
}

// Prefix is the run's namespace name prefix.
func (n *Netns) Prefix() string { return n.prefix }

// Core is the host where etcd and tgtd run.
func (n *Netns) Core() NetnsHost { return n.core }

// Client is the host a user's requests come from.
func (n *Netns) Client() NetnsHost { return n.client }

// Node returns node name's host.
func (n *Netns) Node(name string) (NetnsHost, error) {
	h, ok := n.nodes[name]
	if !ok {
		return NetnsHost{}, fmt.Errorf("%w: %s", ErrNoNode, name)
	}
	return h, nil
}

// SetLink sets node name's eth0 up or down: down is what a dead server's NIC looks like
// to the switch (its port loses carrier, nothing it still has configured answers).
func (n *Netns) SetLink(ctx context.Context, name string, up bool) error {
	h, err := n.Node(name)
	if err != nil {
		return err
	}
	state := "down"
	if up {
		state = "up"
	}
	if err := ipCmd(ctx, "-n", h.NS, "link", "set", "eth0", state); err != nil {
		return err
	}
	if up {
		return n.waitCarrier(ctx, h)
	}
	return nil
}

// Reboot makes node name's network look like a freshly booted server's: eth0 down, every
// address flushed (a floating IP a killed agent left is gone, as after a power cycle),
// its own address back, eth0 up with carrier.
func (n *Netns) Reboot(ctx context.Context, name string) error {
	h, err := n.Node(name)
	if err != nil {
		return err
	}
	for _, s := range [][]string{
		{"-n", h.NS, "link", "set", "eth0", "down"},
		{"-n", h.NS, "addr", "flush", "dev", "eth0"},
		{"-n", h.NS, "addr", "add", h.Addr + netnsPrefixLen, "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
	} {
		if err := ipCmd(ctx, s...); err != nil {
			return err
		}
	}
	return n.waitCarrier(ctx, h)
}

// Addrs lists the IPv4 addresses ("a.b.c.d/len") on ns's eth0.
func (n *Netns) Addrs(ctx context.Context, ns string) ([]string, error) {
	out, err := ipOutput(ctx, "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0")
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				addrs = append(addrs, f[i+1])
			}
		}
	}
	return addrs, nil
}

// NeighMAC is the MAC ns's neighbour table has for ip ("" when none), from
// `ip -n NS neigh show IP`.
func (n *Netns) NeighMAC(ctx context.Context, ns, ip string) (string, error) {
	out, err := ipOutput(ctx, "-n", ns, "neigh", "show", ip)
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1], nil
		}
	}
	return "", nil
}

// DialContext returns a dial function whose sockets are created inside namespace ns, for
// an http.Transport or a gRPC dialer: a socket belongs to the namespace it was created
// in for its whole life, so only the dial itself runs on a switched thread.
func (n *Netns) DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h, err := n.handle(ns)
		if err != nil {
			return nil, err
		}
		var c net.Conn
		err = inNetns(h, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("lab: dial %s %s from %s: %w", network, addr, ns, err)
		}
		return c, nil
	}
}

func (n *Netns) handle(ns string) (netns.NsHandle, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return netns.None(), fmt.Errorf("lab: namespace %s: lab network closed", ns)
	}
	if h, ok := n.handles[ns]; ok {
		return h, nil
	}
	h, err := netns.GetFromName(ns)
	if err != nil {
		return netns.None(), fmt.Errorf("lab: open namespace %s: %w", ns, err)
	}
	n.handles[ns] = h
	return h, nil
}

// inNetns runs f on a new goroutine whose OS thread is switched into ns, then switches
// it back. If switching back fails the thread stays locked, so the runtime ends it with
// the goroutine and no other code ever runs in the wrong namespace.
//
// WARNING: a thread that ends takes the PDEATHSIG of children it forked with it; that
// only happens on the restore failure above, which would be a kernel bug.
func inNetns(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Close deletes every namespace of the run (also any created but not yet recorded, by
// prefix). The caller stops the processes in them first (NetnsProcs.Close): a
// namespace lives on while a process or socket uses it. Safe to call twice.
func (n *Netns) Close() error {
	n.mu.Lock()
	for _, h := range n.handles {
		_ = h.Close()
	}
	n.handles, n.closed = map[string]netns.NsHandle{}, true
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	return CleanupNetns(ctx, n.prefix+"-")
}

// CleanupNetns deletes every namespace whose name starts with prefix, which must start
// with "usl-" (the lab's own names; nothing else is ever deleted).
func CleanupNetns(ctx context.Context, prefix string) error {
	if !strings.HasPrefix(prefix, netnsNamePrefix) || len(prefix) <= len(netnsNamePrefix) {
		return fmt.Errorf("%w: prefix %q: want %s<something>", ErrInvalidOption, prefix, netnsNamePrefix)
	}
	out, err := ipOutput(ctx, "netns", "list")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			errs = append(errs, ipCmd(ctx, "netns", "del", f[0]))
		}
	}
	return errors.Join(errs...)
}

func ipCmd(ctx context.Context, args ...string) error {
	_, err := ipOutput(ctx, args...)
	return err
}

// ipOutput runs ip(8), bounded by ipTimeout, and returns its output.
func ipOutput(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
