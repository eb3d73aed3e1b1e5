//go:build linux

package takeover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/lease"
)

const (
	vip4 = "192.0.2.10/24"
	vip6 = "2001:db8::10/64"
)

func vipCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newLabVIP returns a VIP on eth0 for address that is stopped at cleanup (before
// the lab's namespaces go away: cleanups run last-registered first).
func newLabVIP(t testing.TB, address string) *VIP {
	t.Helper()
	v, err := NewVIP(lease.VIPSpec{Address: address, Interface: "eth0"}, vipLogger(t))
	if err != nil {
		t.Fatalf("NewVIP: %v", err)
	}
	t.Cleanup(func() {
		if err := v.Stop(context.Background()); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return v
}

// vipLogger logs to the test; benchmarks log nothing (their logs are always shown).
func vipLogger(tb testing.TB) *zap.Logger {
	if _, ok := tb.(*testing.B); ok {
		return zap.NewNop()
	}
	return zaptest.NewLogger(tb)
}

// startIn starts v inside n's namespace.
func startIn(ctx context.Context, t testing.TB, n *labNode, v *VIP) error {
	rc := RoleContext{Role: "web", Node: n.name, NodeID: 1, Token: 7, Log: vipLogger(t)}
	return inNS(n.ns, func() error { return v.Start(ctx, rc) })
}

// holdVIP configures address on n by hand, as another holder would have it.
func (l *nsLab) holdVIP(n *labNode, address string) {
	l.t.Helper()
	args := []string{"-n", n.name, "addr", "add", address, "dev", "eth0"}
	if strings.Contains(address, ":") {
		args = append(args, "nodad")
	}
	l.ip(args...)
}

func prefixIP(address string) net.IP {
	return net.IP(netip.MustParsePrefix(address).Addr().AsSlice())
}

// TestVIPStartAnnounces: the old holder is fenced (its address gone) while a client
// still maps the VIP to the old MAC; after Start the client maps it to ours,
// through gratuitous ARP (IPv4) or an unsolicited NA with override (IPv6). Stop
// removes the address and is idempotent.
func TestVIPStartAnnounces(t *testing.T) {
	for _, tc := range []struct{ name, addr, label string }{
		{"ipv4 gratuitous ARP", vip4, "eth0:us"},
		{"ipv6 unsolicited NA", vip6, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := vipCtx(t)
			lab := newNSLab(t, "us", "client", "old")
			us, client, old := lab.nodes["us"], lab.nodes["client"], lab.nodes["old"]
			ip := prefixIP(tc.addr)
			lab.holdVIP(old, tc.addr)
			lab.ip("-n", client.name, "neigh", "replace", ip.String(), "lladdr", old.mac.String(), "dev", "eth0", "nud", "stale")
			lab.ip("-n", old.name, "addr", "del", tc.addr, "dev", "eth0") // fenced
			if got := lab.neighMAC(client, ip); got.String() != old.mac.String() {
				t.Fatalf("primed neighbour = %v, want the old holder's %v", got, old.mac)
			}

			v := newLabVIP(t, tc.addr)
			if err := startIn(ctx, t, us, v); err != nil {
				t.Fatalf("Start: %v", err)
			}
			if label, ok := lab.addrs(us)[tc.addr]; !ok || label != tc.label {
				t.Fatalf("after Start: addresses %v, want %s with label %q", lab.addrs(us), tc.addr, tc.label)
			}
			lab.waitNeighMAC(client, ip, us.mac)
			t.Logf("first announcement %v after Start was called", v.firstAnnounce)

			for i := range 2 {
				if err := v.Stop(ctx); err != nil {
					t.Fatalf("Stop #%d: %v", i+1, err)
				}
				if _, ok := lab.addrs(us)[tc.addr]; ok {
					t.Fatalf("after Stop #%d the address is still there", i+1)
				}
			}
		})
	}
}

// TestVIPStartRefusesAnsweredAddress: another host answers for the VIP, so Start
// fails naming its MAC and adds nothing, unless the MAC is allowed.
func TestVIPStartRefusesAnsweredAddress(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"ipv4 ARP probe", vip4},
		{"ipv6 DAD probe", vip6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := vipCtx(t)
			lab := newNSLab(t, "us", "other")
			us, other := lab.nodes["us"], lab.nodes["other"]
			lab.holdVIP(other, tc.addr)

			v := newLabVIP(t, tc.addr)
			err := startIn(ctx, t, us, v)
			if !errors.Is(err, ErrVIPAnswered) {
				t.Fatalf("Start = %v, want ErrVIPAnswered", err)
			}
			want := fmt.Sprintf("vip %s: already answered by %s on eth0", prefixIP(tc.addr), other.mac)
			if err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			var ae *AnsweredError
			if !errors.As(err, &ae) || len(ae.MACs) != 1 || !bytes.Equal(ae.MACs[0], other.mac) {
				t.Errorf("AnsweredError = %+v, want MACs [%v]", ae, other.mac)
			}
			if _, ok := lab.addrs(us)[tc.addr]; ok {
				t.Fatal("failed Start left the address behind")
			}

			v.AllowAnsweredBy = []net.HardwareAddr{other.mac}
			if err := startIn(ctx, t, us, v); err != nil {
				t.Fatalf("Start with the answering MAC allowed: %v", err)
			}
		})
	}
}

// TestVIPStartInterfaceProblems: an unusable interface fails Start with a message
// naming it, and nothing is added.
func TestVIPStartInterfaceProblems(t *testing.T) {
	for _, tc := range []struct {
		name, ifname string
		breakIt      func(lab *nsLab)
		want         string
	}{
		{"down", "eth0", func(lab *nsLab) { lab.ip("-n", lab.nodes["us"].name, "link", "set", "eth0", "down") },
			"vip 192.0.2.10: interface eth0 is down"},
		{"missing", "eth9", func(*nsLab) {}, "vip 192.0.2.10: interface eth9: not found"},
		{"no carrier", "eth0", func(lab *nsLab) {
			lab.ip("-n", lab.prefix+"-br", "link", "set", "p1", "down")
			lab.waitOperNot(lab.nodes["us"], "up")
		}, "vip 192.0.2.10: interface eth0 has no carrier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := vipCtx(t)
			lab := newNSLab(t, "us")
			tc.breakIt(lab)
			v, err := NewVIP(lease.VIPSpec{Address: vip4, Interface: tc.ifname}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			err = startIn(ctx, t, lab.nodes["us"], v)
			if !errors.Is(err, ErrVIPInterface) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want %q... (ErrVIPInterface)", err, tc.want)
			}
			if _, ok := lab.addrs(lab.nodes["us"])[vip4]; ok {
				t.Fatal("failed Start added the address")
			}
			if err := v.Stop(ctx); err != nil {
				t.Fatalf("Stop after failed Start: %v", err)
			}
		})
	}
}

// TestVIPCheck: qualification adds and removes the test address, tolerates the
// holder answering, and reports a duplicate VIP or a busy test address.
func TestVIPCheck(t *testing.T) {
	lab := newNSLab(t, "us", "holder", "other")
	us, holder, other := lab.nodes["us"], lab.nodes["holder"], lab.nodes["other"]
	const testAddr = "192.0.2.200/24"
	v := newLabVIP(t, vip4)
	v.TestAddress = netip.MustParsePrefix(testAddr)
	check := func() error { return inNS(us.ns, func() error { return v.Check(vipCtx(t)) }) }
	probe := func() (macs []net.HardwareAddr, err error) {
		err = inNS(us.ns, func() error { macs, err = v.Probe(vipCtx(t)); return err })
		return macs, err
	}

	if err := check(); err != nil {
		t.Fatalf("Check with nobody holding the VIP: %v", err)
	}
	if _, ok := lab.addrs(us)[testAddr]; ok {
		t.Fatal("Check left the test address behind")
	}

	lab.holdVIP(holder, vip4)
	if err := check(); err != nil {
		t.Fatalf("Check with the holder answering: %v", err)
	}
	if macs, err := probe(); err != nil || len(macs) != 1 || !bytes.Equal(macs[0], holder.mac) {
		t.Fatalf("Probe = %v, %v; want [%v]", macs, err, holder.mac)
	}

	lab.holdVIP(other, vip4)
	var ae *AnsweredError
	if err := check(); !errors.As(err, &ae) || len(ae.MACs) != 2 {
		t.Fatalf("Check with two hosts answering = %v, want an AnsweredError with both MACs", err)
	}

	lab.ip("-n", other.name, "addr", "del", vip4, "dev", "eth0")
	lab.holdVIP(other, testAddr)
	if err := check(); !errors.Is(err, ErrVIPAnswered) || !strings.Contains(err.Error(), "test address") {
		t.Fatalf("Check with the test address in use = %v, want ErrVIPAnswered naming the test address", err)
	}
}

// TestCleanupVIPs: leftovers of a crashed run are found by label (IPv4) or by the
// VIP itself (IPv6); other addresses stay.
func TestCleanupVIPs(t *testing.T) {
	ctx := vipCtx(t)
	lab := newNSLab(t, "us")
	us := lab.nodes["us"]
	lab.ip("-n", us.name, "addr", "add", "192.0.2.20/24", "dev", "eth0", "label", "eth0:us")
	lab.ip("-n", us.name, "addr", "add", "192.0.2.21/24", "dev", "eth0", "label", "eth0:web")
	lab.ip("-n", us.name, "addr", "add", "192.0.2.22/24", "dev", "eth0")
	lab.holdVIP(us, vip6)

	var removed []netip.Prefix
	err := inNS(us.ns, func() (err error) { removed, err = CleanupVIPs(ctx, defaultLabelSuffix, nil); return err })
	if err != nil || fmt.Sprint(removed) != "[192.0.2.20/24]" {
		t.Fatalf("CleanupVIPs(%q) = %v, %v; want [192.0.2.20/24]", defaultLabelSuffix, removed, err)
	}
	err = inNS(us.ns, func() (err error) { removed, err = CleanupVIPs(ctx, "eth0:web", nil); return err })
	if err != nil || fmt.Sprint(removed) != "[192.0.2.21/24]" {
		t.Fatalf("CleanupVIPs(eth0:web) = %v, %v; want [192.0.2.21/24]", removed, err)
	}
	v := newLabVIP(t, vip6)
	var found bool
	if err := inNS(us.ns, func() (err error) { found, err = v.Cleanup(ctx); return err }); err != nil || !found {
		t.Fatalf("VIP.Cleanup (IPv6) = %v, %v; want true", found, err)
	}
	got := lab.addrs(us)
	for _, gone := range []string{"192.0.2.20/24", "192.0.2.21/24", vip6} {
		if _, ok := got[gone]; ok {
			t.Errorf("%s still present", gone)
		}
	}
	for _, kept := range []string{"192.0.2.22/24", us.v4, us.v6} {
		if _, ok := got[kept]; !ok {
			t.Errorf("%s was removed", kept)
		}
	}
}

// TestVIPStartLeftovers: Start replaces its own leftover (our label) and refuses an
// address configured by someone else.
func TestVIPStartLeftovers(t *testing.T) {
	ctx := vipCtx(t)
	lab := newNSLab(t, "us")
	us := lab.nodes["us"]
	lab.ip("-n", us.name, "addr", "add", vip4, "dev", "eth0", "label", "eth0:us")
	v := newLabVIP(t, vip4)
	if err := startIn(ctx, t, us, v); err != nil {
		t.Fatalf("Start over our own leftover: %v", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	lab.ip("-n", us.name, "addr", "add", vip4, "dev", "eth0", "label", "eth0:admin")
	if err := startIn(ctx, t, us, v); !errors.Is(err, ErrVIPInUse) {
		t.Fatalf("Start over an address configured by hand = %v, want ErrVIPInUse", err)
	}
	if label := lab.addrs(us)[vip4]; label != "eth0:admin" {
		t.Fatalf("the hand-configured address was touched: label now %q", label)
	}
}

// TestVIPAnnouncementScheduleARP captures, on a client, what Start sends: two ARP
// probes from 0.0.0.0, then five rounds of gratuitous ARP request + reply (IPv4), or
// five unsolicited NAs with override, hop limit 255 and our MAC (IPv6). It logs
// when each arrived, counted from the call to Start: the failover cost of the step.
func TestVIPAnnouncementScheduleARP(t *testing.T) {
	for _, tc := range []struct {
		name, addr string
		ethType    uint16
	}{
		{"ipv4", vip4, ethTypeARP},
		{"ipv6", vip6, ethTypeIPv6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := newNSLab(t, "us", "client")
			us, client := lab.nodes["us"], lab.nodes["client"]
			v := newLabVIP(t, tc.addr)
			cctx, cancel := context.WithTimeout(vipCtx(t), 2500*time.Millisecond)
			defer cancel()
			filter := naFilter
			if tc.ethType == ethTypeARP {
				filter = nil
			}
			frames := capture(cctx, t, client, tc.ethType, filter)
			t0 := time.Now()
			if err := startIn(vipCtx(t), t, us, v); err != nil {
				t.Fatalf("Start: %v", err)
			}
			captured := <-frames
			var got []string
			for _, f := range captured {
				kind := describeFrame(t, f.pkt, prefixIP(tc.addr), us.mac)
				got = append(got, kind)
				t.Logf("%8.1f ms  %s", float64(f.at.Sub(t0))/float64(time.Millisecond), kind)
			}
			want := wantFrames(tc.ethType)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("frames on the wire:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func wantFrames(ethType uint16) []string {
	if ethType == ethTypeIPv6 {
		return []string{"na", "na", "na", "na", "na"}
	}
	want := []string{"probe", "probe"}
	for range announceSchedule {
		want = append(want, "garp-request", "garp-reply")
	}
	return want
}

// describeFrame names a captured packet and checks the fields a receiver relies on.
func describeFrame(t *testing.T, pkt []byte, vip net.IP, mac net.HardwareAddr) string {
	t.Helper()
	if m, ok := parseARP(pkt); ok {
		switch {
		case m.op == arpRequest && !m.spa.IsUnspecified() && m.spa == m.tpa && bytes.Equal(m.sha, mac):
			return "garp-request"
		case m.op == arpReply && m.spa == m.tpa && bytes.Equal(m.sha, mac) && bytes.Equal(m.tha, mac):
			return "garp-reply"
		case m.op == arpRequest && m.spa.IsUnspecified() && net.IP(m.tpa.AsSlice()).Equal(vip):
			return "probe"
		}
		return fmt.Sprintf("arp%+v", m)
	}
	target, ok := parseNA(pkt)
	icmp := pkt[ipv6HeaderLen:]
	switch {
	case !ok || !net.IP(target.AsSlice()).Equal(vip):
		return fmt.Sprintf("other %x", pkt)
	case pkt[7] != ndHopLimit || icmp[4] != naFlagOverride || !bytes.Equal(icmp[26:32], mac):
		return fmt.Sprintf("bad-na %x", pkt)
	case icmpv6Checksum([16]byte(pkt[8:24]), [16]byte(pkt[24:40]), icmp) != 0:
		return "na-bad-checksum"
	}
	return "na"
}

// BenchmarkVIPStartToFirstAnnouncement measures Start until the first gratuitous
// ARP has been sent: the probe window (250 ms) plus netlink and socket work.
func BenchmarkVIPStartToFirstAnnouncement(b *testing.B) {
	lab := newNSLab(b, "us", "client")
	us := lab.nodes["us"]
	v := newLabVIP(b, vip4)
	ctx := vipCtx(b)
	var first, probeless time.Duration
	for b.Loop() {
		if err := startIn(ctx, b, us, v); err != nil {
			b.Fatal(err)
		}
		first += v.firstAnnounce
		probeless += v.firstAnnounce - v.probeWindow
		if err := v.Stop(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(first.Microseconds())/1000/float64(b.N), "ms-to-first-garp")
	b.ReportMetric(float64(probeless.Microseconds())/1000/float64(b.N), "ms-besides-probe")
}

func TestParseVIPSpec(t *testing.T) {
	for _, tc := range []struct {
		name            string
		spec            lease.VIPSpec
		prefix, label   string
		wantErrContains string
	}{
		{"ipv4 default label", lease.VIPSpec{Address: vip4, Interface: "eth0"}, vip4, "eth0:us", ""},
		{"ipv4 own label", lease.VIPSpec{Address: vip4, Interface: "eth0", Label: "eth0:web"}, vip4, "eth0:web", ""},
		{"ipv4 /32", lease.VIPSpec{Address: "192.0.2.10/32", Interface: "eth0"}, "192.0.2.10/32", "eth0:us", ""},
		{"ipv4 /31 low", lease.VIPSpec{Address: "192.0.2.0/31", Interface: "eth0"}, "192.0.2.0/31", "eth0:us", ""},
		{"label cut to 15", lease.VIPSpec{Address: vip4, Interface: "enp0s31f6abcd"}, vip4, "enp0s31f6abcd:u", ""},
		{"no room for a label", lease.VIPSpec{Address: vip4, Interface: "enx001122334455"}, vip4, "", ""},
		{"ipv6 no label", lease.VIPSpec{Address: vip6, Interface: "eth0", Label: "eth0:x"}, vip6, "", ""},
		{"empty address", lease.VIPSpec{Interface: "eth0"}, "", "", "vip.address: required"},
		{"not a prefix", lease.VIPSpec{Address: "192.0.2.10", Interface: "eth0"}, "", "", `vip.address: "192.0.2.10" is not an IP prefix`},
		{"network address", lease.VIPSpec{Address: "192.0.2.0/24", Interface: "eth0"}, "", "", "network or broadcast"},
		{"broadcast address", lease.VIPSpec{Address: "192.0.2.255/24", Interface: "eth0"}, "", "", "network or broadcast"},
		{"multicast", lease.VIPSpec{Address: "ff02::1/64", Interface: "eth0"}, "", "", "want a unicast address"},
		{"link-local", lease.VIPSpec{Address: "fe80::1/64", Interface: "eth0"}, "", "", "want a unicast address"},
		{"4in6", lease.VIPSpec{Address: "::ffff:192.0.2.10/120", Interface: "eth0"}, "", "", "IPv4-mapped"},
		{"no interface", lease.VIPSpec{Address: vip4}, "", "", "vip.interface: required"},
		{"bad interface", lease.VIPSpec{Address: vip4, Interface: "eth0:1"}, "", "", "vip.interface: \"eth0:1\" is not"},
		{"label without ifname", lease.VIPSpec{Address: vip4, Interface: "eth0", Label: "web"}, "", "", "must begin with the interface name"},
		{"label is ifname", lease.VIPSpec{Address: vip4, Interface: "eth0", Label: "eth0"}, "", "", "equals the interface name"},
		{"label too long", lease.VIPSpec{Address: vip4, Interface: "eth0", Label: "eth0:0123456789ab"}, "", "", "at most 15"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseVIPSpec(tc.spec)
			if tc.wantErrContains != "" {
				if !errors.Is(err, ErrInvalidVIP) || !strings.Contains(err.Error(), tc.wantErrContains) {
					t.Fatalf("parseVIPSpec = %v, want ErrInvalidVIP containing %q", err, tc.wantErrContains)
				}
				return
			}
			if err != nil || c.prefix.String() != tc.prefix || c.label != tc.label {
				t.Fatalf("parseVIPSpec = %+v, %v; want prefix %s label %q", c, err, tc.prefix, tc.label)
			}
		})
	}
}

func TestVIPLabelMatches(t *testing.T) {
	for _, tc := range []struct {
		label, ifname, prefix string
		want                  bool
	}{
		{"eth0:us", "eth0", ":us", true},
		{"eth0:users", "eth0", ":us", false},   // not the default label
		{"eth0", "eth0", ":us", false},         // primary label
		{"eth0:web", "eth0", ":us", false},     // someone else's
		{"eth0:web", "eth0", "eth0:web", true}, // operator's label, absolute
		{"enp0s31f6abcd:u", "enp0s31f6abcd", ":us", true},
		{"enp0s31f6abcd:x", "enp0s31f6abcd", ":us", false},
		{"enp0s31f6abcde", "enp0s31f6abcde", ":us", false}, // cut to the bare name
		{"", "eth0", ":us", false},
	} {
		if got := labelMatches(tc.label, tc.ifname, tc.prefix); got != tc.want {
			t.Errorf("labelMatches(%q, %q, %q) = %v, want %v", tc.label, tc.ifname, tc.prefix, got, tc.want)
		}
	}
}

func TestARPCodec(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	vip := netip.MustParseAddr("192.0.2.10")
	b := arpPacket(arpReply, mac, vip, mac, vip)
	m, ok := parseARP(b)
	if !ok || m.op != arpReply || !bytes.Equal(m.sha, mac) || !bytes.Equal(m.tha, mac) || m.spa != vip || m.tpa != vip {
		t.Fatalf("parseARP(arpPacket(...)) = %+v, %v", m, ok)
	}
	if _, ok := parseARP(b[:27]); ok {
		t.Error("parseARP accepted a short packet")
	}
}

func TestVIPNDPCodec(t *testing.T) {
	target := netip.MustParseAddr("2001:db8::10")
	pkt, mac := dadSolicitation(target)
	if mac.String() != "33:33:ff:00:00:10" || netip.AddrFrom16([16]byte(pkt[24:40])).String() != "ff02::1:ff00:10" {
		t.Errorf("solicited-node group %v / %x", mac, pkt[24:40])
	}
	if sum := icmpv6Checksum([16]byte(pkt[8:24]), [16]byte(pkt[24:40]), pkt[ipv6HeaderLen:]); sum != 0 {
		t.Errorf("checksum does not verify (residue %#x)", sum)
	}
	na := append(append([]byte{}, pkt[:ipv6HeaderLen]...), neighborAdvert(target, mac, naFlagOverride)...)
	if got, ok := parseNA(na); !ok || got != target {
		t.Errorf("parseNA = %v, %v; want %v", got, ok, target)
	}
	if _, ok := parseNA(pkt); ok {
		t.Error("parseNA accepted a solicitation")
	}
}

func FuzzParseVIPSpec(f *testing.F) {
	f.Add(vip4, "eth0", "")
	f.Add(vip6, "eth0", "eth0:x")
	f.Add("192.0.2.0/24", "eth0:1", "web")
	f.Fuzz(func(t *testing.T, addr, ifname, label string) {
		c, err := parseVIPSpec(lease.VIPSpec{Address: addr, Interface: ifname, Label: label})
		if err != nil {
			return
		}
		if !c.prefix.IsValid() || len(c.label) > maxLabelLen || (c.label != "" && !strings.HasPrefix(c.label, ifname)) {
			t.Fatalf("accepted %q %q %q as %+v", addr, ifname, label, c)
		}
	})
}

func FuzzParseARP(f *testing.F) {
	f.Add(arpPacket(arpRequest, net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.IPv4Unspecified(),
		make(net.HardwareAddr, 6), netip.MustParseAddr("192.0.2.10")))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := parseARP(b)
		if ok && !bytes.Equal(arpPacket(m.op, m.sha, m.spa, m.tha, m.tpa), b[:arpLen]) {
			t.Fatalf("%x does not round-trip", b)
		}
	})
}

func FuzzVIPParseNA(f *testing.F) {
	pkt, _ := dadSolicitation(netip.MustParseAddr("2001:db8::10"))
	f.Add(pkt)
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, ok := parseNA(b); ok && !a.Is6() {
			t.Fatalf("parseNA(%x) = %v", b, a)
		}
	})
}

// TestVIPPreparedProbe: the probe Prepare begins (as Chain.Start does, so it runs
// while storage and exec start) decides Start exactly as Start's own probe would;
// Abort ends it without a trace.
func TestVIPPreparedProbe(t *testing.T) {
	ctx := vipCtx(t)
	lab := newNSLab(t, "us", "other")
	us, other := lab.nodes["us"], lab.nodes["other"]
	lab.holdVIP(other, vip4)
	rc := RoleContext{Role: "web", Node: us.name, NodeID: 1, Token: 7, Log: vipLogger(t)}
	v := newLabVIP(t, vip4)

	err := inNS(us.ns, func() error { v.Prepare(ctx, rc); return v.Start(ctx, rc) })
	if !errors.Is(err, ErrVIPAnswered) {
		t.Fatalf("prepared Start with another host answering = %v, want ErrVIPAnswered", err)
	}
	if _, ok := lab.addrs(us)[vip4]; ok {
		t.Fatal("failed Start left the address behind")
	}

	if err := inNS(us.ns, func() error { v.Prepare(ctx, rc); v.Abort(); v.Abort(); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, ok := lab.addrs(us)[vip4]; ok {
		t.Fatal("Prepare and Abort added the address")
	}

	fenced := rc
	fenced.FencedMACs = []net.HardwareAddr{other.mac}
	if err := inNS(us.ns, func() error { v.Prepare(ctx, fenced); return v.Start(ctx, fenced) }); err != nil {
		t.Fatalf("prepared Start with the fenced holder answering: %v", err)
	}
	if _, ok := lab.addrs(us)[vip4]; !ok {
		t.Fatal("prepared Start did not add the address")
	}
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
