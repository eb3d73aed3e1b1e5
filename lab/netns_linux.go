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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/understudy-ha/understudy/lease"
)

// A Netns lab is a small switched farm of network namespaces, so that agents run as
// separate hosts and a floating IP really moves between them. Three networks, one
// bridge each in the switch namespace, so a node can be cut from one and not the others:
//
//	client   192.0.2.0/24       eth0 of nodes and the client: where the VIPs live
//	control  198.51.100.0/25    eth1 of nodes and the etcd host
//	san      198.51.100.128/25  eth2 of nodes and the SAN host (tgtd)
//
//	<prefix>-sw       the switch: bridges client, control, san (no addresses)
//	<prefix>-etcd     198.51.100.1       etcd
//	<prefix>-san      198.51.100.129     tgtd
//	<prefix>-client   192.0.2.100        where a user's requests come from
//	<prefix>-<node>   192.0.2.<10+i>, 198.51.100.<10+i>, 198.51.100.<138+i>  (i from 0)
//
// Only documentation ranges are used and nothing is created or changed in the caller's
// namespace: every veth is created inside a lab namespace with `ip -n`, and the switch
// has no route anywhere. Prefixes start with "usl-" and are unique per run, so leftovers
// of a crashed run are recognisable (CleanupNetns) and runs never collide.

// Addresses of the lab's fixed hosts, and the first node's host number.
const (
	NetnsEtcdAddr   = "198.51.100.1"
	NetnsSANAddr    = "198.51.100.129"
	NetnsClientAddr = "192.0.2.100"
	netnsFirstNode  = 10
	netnsClientHost = 100 // also the end of the nodes' range
	netnsMaxNodes   = netnsClientHost - netnsFirstNode
	netnsNamePrefix = "usl-"
	ipTimeout       = 20 * time.Second
)

// labNet is one network: its bridge, the host's interface on it, and its address plan.
type labNet struct {
	name, ifname string
	octet        byte   // MAC byte 4, so neighbour tables read like the plan
	prefix       string // "/24" or "/25"
	addr         func(host int) string
}

var labNets = []labNet{
	{NetClient, "eth0", 1, "/24", func(h int) string { return fmt.Sprintf("192.0.2.%d", h) }},
	{NetControl, "eth1", 2, "/25", func(h int) string { return fmt.Sprintf("198.51.100.%d", h) }},
	{NetSAN, "eth2", 3, "/25", func(h int) string { return fmt.Sprintf("198.51.100.%d", 128+h) }},
}

// NetnsHost is one host of the lab network.
type NetnsHost struct {
	NS   string           // namespace name, for `ip -n` and `ip netns exec`
	Addr string           // IPv4 address on the client network (eth0), "" if not on it
	Ctl  string           // IPv4 address on the control network (eth1), "" if not on it
	SAN  string           // IPv4 address on the SAN (eth2), "" if not on it
	MAC  net.HardwareAddr // eth0's MAC
	host int              // host number: the last octet on the client/control networks
	nets []labNet
}

// Netns is a lab network; see the comment at the top of this file. Its methods are safe
// for concurrent use.
type Netns struct {
	prefix string
	sw     string
	etcd   NetnsHost
	san    NetnsHost
	client NetnsHost

	mu       sync.Mutex  // guards etcdMore, nodes, handles, closed
	etcdMore []NetnsHost // AddEtcdHost: the further members of a 3-member etcd
	nodes    map[string]NetnsHost
	handles  map[string]netns.NsHandle
	closed   bool
}

// NewNetns builds the switch, the etcd, SAN and client hosts, and the given nodes (more
// can be added with AddNode), every link up, and returns once every link has carrier.
// On error everything created is deleted.
func NewNetns(ctx context.Context, nodes ...string) (_ *Netns, err error) {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	return newNetns(ctx, fmt.Sprintf("%s%d-%s", netnsNamePrefix, os.Getpid(), hex.EncodeToString(rnd[:])), nodes...)
}

func newNetns(ctx context.Context, prefix string, nodes ...string) (_ *Netns, err error) {
	if len(nodes) > netnsMaxNodes {
		return nil, fmt.Errorf("%w: nodes: %d given, at most %d", ErrInvalidOption, len(nodes), netnsMaxNodes)
	}
	n := &Netns{prefix: prefix, sw: prefix + "-sw", nodes: map[string]NetnsHost{}, handles: map[string]netns.NsHandle{}}
	n.etcd = newHost(prefix+"-etcd", 1, labNets[1])
	n.san = newHost(prefix+"-san", 1, labNets[2])
	n.client = newHost(prefix+"-client", netnsClientHost, labNets[0])
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()
	if err := n.addSwitch(ctx); err != nil {
		return nil, err
	}
	for _, h := range []NetnsHost{n.etcd, n.san, n.client} {
		if err := n.addHost(ctx, h); err != nil {
			return nil, err
		}
	}
	for _, name := range nodes {
		if _, err := n.AddNode(ctx, name); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func newHost(ns string, host int, nets ...labNet) NetnsHost {
	h := NetnsHost{NS: ns, host: host, nets: nets}
	for _, ln := range nets {
		switch ln.name {
		case NetClient:
			h.Addr, h.MAC = ln.addr(host), labMAC(ln.octet, host)
		case NetControl:
			h.Ctl = ln.addr(host)
		case NetSAN:
			h.SAN = ln.addr(host)
		}
	}
	return h
}

// AddNode creates node name's namespace on all three networks, or returns the existing
// one.
func (n *Netns) AddNode(ctx context.Context, name string) (NetnsHost, error) {
	if err := lease.CheckNodeName(name); err != nil {
		return NetnsHost{}, fmt.Errorf("%w: node: %w", ErrInvalidOption, err)
	}
	n.mu.Lock()
	if h, ok := n.nodes[name]; ok {
		n.mu.Unlock()
		return h, nil
	}
	if len(n.nodes) >= netnsMaxNodes {
		n.mu.Unlock()
		return NetnsHost{}, fmt.Errorf("%w: node %s: the lab holds at most %d nodes", ErrInvalidOption, name, netnsMaxNodes)
	}
	used := map[int]bool{}
	for _, h := range n.nodes {
		used[h.host] = true
	}
	host := netnsFirstNode
	for used[host] {
		host++
	}
	h := newHost(n.prefix+"-"+name, host, labNets...)
	n.nodes[name] = h
	n.mu.Unlock()
	if err := n.addHost(ctx, h); err != nil {
		return NetnsHost{}, err
	}
	return h, nil
}

// labMAC is a locally administered MAC naming the network and the host number.
func labMAC(net byte, host int) net.HardwareAddr {
	return []byte{0x02, 0, 0, net, 0, byte(host)}
}

func (n *Netns) addSwitch(ctx context.Context) error {
	if err := ipCmd(ctx, "netns", "add", n.sw); err != nil {
		return err
	}
	for _, ln := range labNets {
		// Snooping off: the lab is about ARP and VRRP, and late multicast joins must
		// not drop anything.
		if err := ipCmd(ctx, "-n", n.sw, "link", "add", ln.name, "type", "bridge", "mcast_snooping", "0"); err != nil {
			return err
		}
		if err := ipCmd(ctx, "-n", n.sw, "link", "set", ln.name, "up"); err != nil {
			return err
		}
	}
	return nil
}

// addHost creates h's namespace and one veth per network, whose peer is created
// directly in the switch namespace (never in ours) and enslaved to that network's
// bridge, then waits for carrier.
func (n *Netns) addHost(ctx context.Context, h NetnsHost) error {
	if err := ipCmd(ctx, "netns", "add", h.NS); err != nil {
		return err
	}
	if err := ipCmd(ctx, "-n", h.NS, "link", "set", "lo", "up"); err != nil {
		return err
	}
	return configureLinks(ctx, h, func(ln labNet) [][]string {
		port := fmt.Sprintf("%s%d", ln.name[:2], h.host)
		return [][]string{
			{"-n", h.NS, "link", "add", ln.ifname, "address", labMAC(ln.octet, h.host).String(), "type", "veth", "peer", "name", port, "netns", n.sw},
			{"-n", n.sw, "link", "set", port, "master", ln.name, "up"},
			{"-n", h.NS, "addr", "add", ln.addr(h.host) + ln.prefix, "dev", ln.ifname},
			{"-n", h.NS, "link", "set", ln.ifname, "up"},
		}
	})
}

// configureLinks runs the ip commands cmds gives for each of h's networks, then waits
// until every link has carrier.
func configureLinks(ctx context.Context, h NetnsHost, cmds func(ln labNet) [][]string) error {
	for _, ln := range h.nets {
		for _, s := range cmds(ln) {
			if err := ipCmd(ctx, s...); err != nil {
				return err
			}
		}
	}
	for _, ln := range h.nets {
		if err := waitCarrier(ctx, h.NS, ln.ifname); err != nil {
			return err
		}
	}
	return nil
}

// waitCarrier polls until ns's interface reports LOWER_UP (veth carrier comes up
// asynchronously after `link set up`).
func waitCarrier(ctx context.Context, ns, ifname string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := ipOutput(ctx, "-n", ns, "-o", "link", "show", "dev", ifname)
		if err == nil && strings.Contains(out, "LOWER_UP") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s %s carrier: %w (last: %v %s)", ErrWait, ns, ifname, ctx.Err(), err, out)
		case <-tick.C:
		}
	}
}

// Prefix is the run's namespace name prefix.
func (n *Netns) Prefix() string { return n.prefix }

// Etcd is the host where etcd runs (control network).
func (n *Netns) Etcd() NetnsHost { return n.etcd }

// SAN is the host where tgtd runs (SAN network).
func (n *Netns) SAN() NetnsHost { return n.san }

// Client is the host a user's requests come from.
func (n *Netns) Client() NetnsHost { return n.client }

// Node returns node name's host.
func (n *Netns) Node(name string) (NetnsHost, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.nodes[name]
	if !ok {
		return NetnsHost{}, fmt.Errorf("%w: %s", ErrNoNode, name)
	}
	return h, nil
}

// SetLink sets all of node name's links up or down: down is what a dead server's NICs
// look like to the switch (the ports lose carrier, nothing it still has configured
// answers).
func (n *Netns) SetLink(ctx context.Context, name string, up bool) error {
	return n.SetLinkOn(ctx, name, up)
}

// SetLinkOn sets node name's links on the given networks (NetClient, NetControl,
// NetSAN; none: all) up or down, and waits for carrier when up.
func (n *Netns) SetLinkOn(ctx context.Context, name string, up bool, nets ...string) error {
	h, err := n.Node(name)
	if err != nil {
		return err
	}
	state := "down"
	if up {
		state = "up"
	}
	for _, ln := range h.nets {
		if len(nets) > 0 && !slices.Contains(nets, ln.name) {
			continue
		}
		if err := ipCmd(ctx, "-n", h.NS, "link", "set", ln.ifname, state); err != nil {
			return err
		}
		if up {
			if err := waitCarrier(ctx, h.NS, ln.ifname); err != nil {
				return err
			}
		}
	}
	return nil
}

// Reboot makes node name's network look like a freshly booted server's: links down,
// every address flushed (a floating IP a killed agent left is gone, as after a power
// cycle), its own addresses back, links up with carrier.
func (n *Netns) Reboot(ctx context.Context, name string) error {
	h, err := n.Node(name)
	if err != nil {
		return err
	}
	return configureLinks(ctx, h, func(ln labNet) [][]string {
		return [][]string{
			{"-n", h.NS, "link", "set", ln.ifname, "down"},
			{"-n", h.NS, "addr", "flush", "dev", ln.ifname},
			{"-n", h.NS, "addr", "add", ln.addr(h.host) + ln.prefix, "dev", ln.ifname},
			{"-n", h.NS, "link", "set", ln.ifname, "up"},
		}
	})
}

// AddEtcdHost creates the namespace <prefix>-etcd<i> on the control network at
// 198.51.100.<i>, for the i-th member of a multi-member etcd (i from 2; member 1 is
// Etcd()), or returns the existing one.
func (n *Netns) AddEtcdHost(ctx context.Context, i int) (NetnsHost, error) {
	if i < 2 || i >= netnsFirstNode {
		return NetnsHost{}, fmt.Errorf("%w: etcd member %d: want 2..%d", ErrInvalidOption, i, netnsFirstNode-1)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.etcdMore {
		if h.host == i {
			return h, nil
		}
	}
	h := newHost(fmt.Sprintf("%s-etcd%d", n.prefix, i), i, labNets[1])
	if err := n.addHost(ctx, h); err != nil {
		return NetnsHost{}, err
	}
	n.etcdMore = append(n.etcdMore, h)
	return h, nil
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

// Close deletes every namespace of the run (also any created but not yet recorded, by
// prefix). The caller stops the processes in them first (NetnsProcs.Close): a
// namespace lives on while a process or socket uses it. Safe to call twice.
func (n *Netns) Close() error {
	n.closeHandles()
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	return CleanupNetns(ctx, n.prefix+"-")
}

// closeHandles closes the namespace handles dialling opened; no dial works afterwards.
func (n *Netns) closeHandles() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.handles {
		_ = h.Close()
	}
	n.handles, n.closed = map[string]netns.NsHandle{}, true
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
