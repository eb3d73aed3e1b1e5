//go:build linux

package takeover

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
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Network namespace labs for the vip tests: node namespaces, each with an "eth0"
// veth whose peer sits on bridge br0 in a bridge namespace, as hosts on one switch.
// Only 192.0.2.0/24 and 2001:db8::/32 are used, and nothing is created outside the
// lab's namespaces: veths are created inside them with `ip -n`, never in the
// host's namespace. Every namespace is deleted at cleanup, also on failure.

// requireNetns skips the test when it cannot create namespaces, unless
// UNDERSTUDY_REQUIRE_ALL=1, then it fails.
func requireNetns(t testing.TB) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		missing = "the ip command (iproute2)"
	}
	if missing == "" {
		return
	}
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatalf("network namespace test needs %s (UNDERSTUDY_REQUIRE_ALL=1)", missing)
	}
	t.Skipf("network namespace test needs %s", missing)
}

// labNode is one host of a lab.
type labNode struct {
	name   string          // namespace name
	ns     netns.NsHandle  // open handle of the namespace
	nl     *netlink.Handle // netlink in the namespace
	mac    net.HardwareAddr
	v4, v6 string // the node's own address on eth0 (with prefix length)
}

// nsLab is a set of namespaces on one bridge.
type nsLab struct {
	t      testing.TB
	prefix string // us-test-<random>
	nodes  map[string]*labNode
}

// ipRun runs the ip command, bounded, returning its output in the error.
func ipRun(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *nsLab) ip(args ...string) {
	l.t.Helper()
	if err := ipRun(args...); err != nil {
		l.t.Fatal(err)
	}
}

// addNS creates a namespace deleted at cleanup.
func (l *nsLab) addNS(suffix string) string {
	l.t.Helper()
	name := l.prefix + "-" + suffix
	l.ip("netns", "add", name)
	l.t.Cleanup(func() {
		if err := ipRun("netns", "del", name); err != nil {
			l.t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// newNSLab builds a bridge namespace and one namespace per node. Node i (from 1)
// gets eth0 with MAC 02:00:00:00:00:0i, 192.0.2.i/24 and 2001:db8::i/64.
func newNSLab(t testing.TB, nodes ...string) *nsLab {
	t.Helper()
	requireNetns(t)
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	l := &nsLab{t: t, prefix: "us-test-" + hex.EncodeToString(rnd[:]), nodes: map[string]*labNode{}}
	br := l.addNS("br")
	// Snooping off: hosts join groups late, and the tests are about ARP/NDP, not MLD.
	l.ip("-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.ip("-n", br, "link", "set", "br0", "up")
	for i, n := range nodes {
		name := l.addNS(n)
		port := fmt.Sprintf("p%d", i+1)
		mac := net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i + 1)}
		l.ip("-n", name, "link", "add", "eth0", "address", mac.String(), "type", "veth", "peer", "name", port, "netns", br)
		l.ip("-n", br, "link", "set", port, "master", "br0", "up")
		l.ip("-n", name, "link", "set", "lo", "up")
		l.ip("-n", name, "link", "set", "eth0", "up")
		node := &labNode{name: name, mac: mac, v4: fmt.Sprintf("192.0.2.%d/24", i+1), v6: fmt.Sprintf("2001:db8::%d/64", i+1)}
		l.ip("-n", name, "addr", "add", node.v4, "dev", "eth0")
		l.ip("-n", name, "addr", "add", node.v6, "dev", "eth0", "nodad")
		h, err := netns.GetFromName(name)
		if err != nil {
			t.Fatalf("open namespace %s: %v", name, err)
		}
		t.Cleanup(func() { _ = h.Close() })
		node.ns = h
		if node.nl, err = netlink.NewHandleAt(h); err != nil {
			t.Fatalf("netlink in %s: %v", name, err)
		}
		t.Cleanup(node.nl.Close)
		l.nodes[n] = node
	}
	for _, n := range nodes {
		l.waitOperUp(l.nodes[n])
	}
	return l
}

// waitOperUp waits until the node's eth0 has carrier (veth carrier comes up
// asynchronously after `link set up`).
func (l *nsLab) waitOperUp(n *labNode) {
	l.t.Helper()
	l.waitOper(n, "up", func(s netlink.LinkOperState) bool { return s == netlink.OperUp })
}

// waitOperNot waits until the operational state of the node's eth0 is not state.
func (l *nsLab) waitOperNot(n *labNode, state string) {
	l.t.Helper()
	l.waitOper(n, "not "+state, func(s netlink.LinkOperState) bool { return s.String() != state })
}

func (l *nsLab) waitOper(n *labNode, what string, ok func(netlink.LinkOperState) bool) {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		link, err := n.nl.LinkByName("eth0")
		if err == nil && ok(link.Attrs().OperState) {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: eth0 operational state not %s after 10s (err %v)", n.name, what, err)
		}
	}
}

// inNS runs f on a goroutine whose OS thread is switched into ns, then switches it
// back. If switching back fails the thread stays locked, so the runtime ends it
// with the goroutine and no other code ever runs in the wrong namespace.
func inNS(ns netns.NsHandle, f func() error) error {
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

// neighMAC is the MAC n's neighbour table has for ip on eth0 (nil if none).
func (l *nsLab) neighMAC(n *labNode, ip net.IP) net.HardwareAddr {
	l.t.Helper()
	h := n.nl
	link, err := h.LinkByName("eth0")
	if err != nil {
		l.t.Fatalf("%s: eth0: %v", n.name, err)
	}
	family := netlink.FAMILY_V4
	if ip.To4() == nil {
		family = netlink.FAMILY_V6
	}
	neighs, err := h.NeighList(link.Attrs().Index, family)
	if err != nil {
		l.t.Fatalf("%s: neighbour list: %v", n.name, err)
	}
	for _, nb := range neighs {
		if nb.IP.Equal(ip) {
			return nb.HardwareAddr
		}
	}
	return nil
}

// waitNeighMAC polls n's neighbour table until ip maps to want, or fails after 5s.
func (l *nsLab) waitNeighMAC(n *labNode, ip net.IP, want net.HardwareAddr) {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		got := l.neighMAC(n, ip)
		if got.String() == want.String() {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: neighbour %s is %v after 5s, want %v", n.name, ip, got, want)
		}
	}
}

// addrs maps the addresses on n's eth0 ("addr/len") to their labels ("" for IPv6).
func (l *nsLab) addrs(n *labNode) map[string]string {
	l.t.Helper()
	h := n.nl
	link, err := h.LinkByName("eth0")
	if err != nil {
		l.t.Fatalf("%s: eth0: %v", n.name, err)
	}
	as, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		l.t.Fatalf("%s: addresses: %v", n.name, err)
	}
	m := map[string]string{}
	for _, a := range as {
		m[a.IPNet.String()] = a.Label
	}
	return m
}

// frame is one packet captured by capture, with its arrival time.
type frame struct {
	at   time.Time // arrival (monotonic)
	from net.HardwareAddr
	pkt  []byte // from the network header on
}

// capture records the frames of ethType (optionally filtered) arriving on n's eth0
// until ctx is done, then sends them on the returned channel. The socket is opened
// in n's namespace before capture returns, so nothing sent afterwards is missed.
func capture(ctx context.Context, t testing.TB, n *labNode, ethType uint16, filter []unix.SockFilter) <-chan []frame {
	t.Helper()
	link, err := n.nl.LinkByName("eth0")
	if err != nil {
		t.Fatalf("%s: eth0: %v", n.name, err)
	}
	var s *sock
	if err := inNS(n.ns, func() (err error) { s, err = packetSock(link.Attrs().Index, ethType, filter); return err }); err != nil {
		t.Fatalf("%s: capture socket: %v", n.name, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.f.SetReadDeadline(time.Now()) })
	out := make(chan []frame, 1)
	go func() { // owned by the caller: it ends with ctx, and the caller receives from out
		defer stop()
		defer s.Close()
		var frames []frame
		buf := make([]byte, 2048)
		for ctx.Err() == nil {
			n, from, err := s.recvfrom(buf)
			ll, ok := from.(*unix.SockaddrLinklayer)
			if err != nil || !ok || ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			frames = append(frames, frame{at: time.Now(), from: net.HardwareAddr(ll.Addr[:6]),
				pkt: append([]byte(nil), buf[:n]...)})
		}
		out <- frames
	}()
	return out
}
