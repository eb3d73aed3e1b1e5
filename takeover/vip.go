package takeover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// The vip resource's parts that need no particular operating system (spec, schedule,
// errors, packet codecs); vip_linux.go and arp_linux.go do the work.
const (
	// defaultLabelSuffix is appended to the interface name to form the IPv4 label of
	// a VIP whose spec has none ("eth0:us"). CleanupVIPs finds leftovers by it.
	defaultLabelSuffix = ":us"
	// maxLabelLen is the kernel's limit for interface names and labels (IFNAMSIZ-1).
	maxLabelLen = 15
	// defaultProbeWindow bounds how long Start and Check listen for hosts answering
	// for the address. Long enough for a loaded host on the same LAN to answer an
	// ARP request (typically well under 10 ms), short enough to keep it a small part
	// of a failover.
	defaultProbeWindow = 250 * time.Millisecond
	// netlinkTimeout bounds each netlink request: they do not take a context, and a
	// wedged rtnl lock must not hang a takeover forever.
	netlinkTimeout = 5 * time.Second
)

// announceSchedule is when the announcements are sent, as offsets from the first
// one. One frame can be lost, and a switch port or a client that is busy may miss
// the first ones; spreading five over 1.5 s with growing gaps is what keepalived and
// Pacemaker's IPaddr2 do in spirit, and keeps the whole burst well inside a
// failover's budget.
var announceSchedule = []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond, 1500 * time.Millisecond}

// VIP is the "vip" resource: the role's floating IP on one interface. It
// implements Resource, and Check for qualification.
//
// Start probes the link for hosts that already answer for the address (ARP request
// from 0.0.0.0 for IPv4, a DAD neighbour solicitation from :: for IPv6; neither
// touches anybody's neighbour cache), adds the address with netlink (IPv4 with a
// label so a crashed run's leftovers can be found; IPv6 with IFA_F_NODAD so it is
// usable at once), and announces it on announceSchedule from a goroutine the VIP
// owns until Stop.
//
// Namespace rule: the VIP works in the network namespace of the thread that calls
// Start (and Check, Probe, Cleanup, CleanupVIPs): every socket is opened by the
// calling goroutine, never by the announcing one, and Stop uses the sockets Start
// opened. The agent runs in one namespace, so this only matters to tests and labs.
type VIP struct {
	// AllowAnsweredBy lists MACs that may answer for the address when Start probes
	// without failing it: typically the fenced previous holder, which still answers
	// until its own agent or the fence removes the address. Set before Start.
	AllowAnsweredBy []net.HardwareAddr
	// TestAddress, when valid, is added to and removed from the interface by Check
	// to prove that this node may configure addresses there. It must be an address
	// of the same link that nobody uses. The zero value skips that part of Check.
	TestAddress netip.Prefix

	cfg vipConfig
	log *zap.Logger

	// Timings, unexported so tests can shorten them.
	probeWindow time.Duration
	schedule    []time.Duration

	opMu    sync.Mutex // serialises Start, Stop, Prepare, Abort and Cleanup
	run     *vipRun    // what Start set up; nil when stopped. Guarded by opMu.
	pending *vipProbe  // a probe Prepare began, for Start. Guarded by opMu.
	// firstAnnounce is the time from entering Start to the first announcement
	// leaving, for the timing benchmark. Guarded by opMu.
	firstAnnounce time.Duration
}

// NewVIP validates spec and returns the vip resource for it. Errors wrap
// ErrInvalidVIP and name the fields: vip.address: "10.0.0.300/24" is not an IP
// prefix. log nil means zap.NewNop().
func NewVIP(spec lease.VIPSpec, log *zap.Logger) (*VIP, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cfg, err := parseVIPSpec(spec)
	if err != nil {
		return nil, err
	}
	if spec.Label != "" && cfg.prefix.Addr().Is6() {
		log.Warn("vip.label is ignored for IPv6 addresses: Linux keeps no labels for them",
			zap.String("address", spec.Address), zap.String("label", spec.Label))
	}
	if cfg.prefix.Addr().Is4() && cfg.label == "" {
		log.Warn("vip interface name too long for a label suffix: CleanupVIPs cannot recognise this address",
			zap.String("interface", cfg.ifname))
	}
	return &VIP{
		cfg:         cfg,
		log:         log,
		probeWindow: defaultProbeWindow,
		schedule:    announceSchedule,
	}, nil
}

// Name implements Resource.
func (v *VIP) Name() string { return "vip" }

// Prefix is the floating address with its prefix length (192.0.2.10/24).
func (v *VIP) Prefix() netip.Prefix { return v.cfg.prefix }

// Interface is the name of the interface the address goes on.
func (v *VIP) Interface() string { return v.cfg.ifname }

// Label is the IPv4 label the address gets ("eth0:us"); "" for IPv6.
func (v *VIP) Label() string { return v.cfg.label }

// AnsweredError reports the hosts that answered a probe for a VIP. It matches
// ErrVIPAnswered with errors.Is; use errors.As to read the MACs and decide (the
// previous holder's MAC may be acceptable, a stranger's is not).
type AnsweredError struct {
	Address   netip.Addr
	Interface string
	MACs      []net.HardwareAddr // in the order they first answered
}

func (e *AnsweredError) Error() string {
	macs := make([]string, len(e.MACs))
	for i, m := range e.MACs {
		macs[i] = m.String()
	}
	return fmt.Sprintf("vip %s: already answered by %s on %s", e.Address, strings.Join(macs, ", "), e.Interface)
}

// Is makes errors.Is(err, ErrVIPAnswered) true.
func (e *AnsweredError) Is(target error) bool { return target == ErrVIPAnswered }

// vipConfig is a parsed, validated lease.VIPSpec.
type vipConfig struct {
	prefix netip.Prefix // the address with its prefix length, not masked: 192.0.2.10/24
	ifname string
	// label is the IPv4 address label; "" when the address gets none (IPv6, whose
	// addresses have no labels in Linux, or an interface name too long for a suffix).
	label string
}

// parseVIPSpec validates s; every problem is reported, each naming its field.
func parseVIPSpec(s lease.VIPSpec) (vipConfig, error) {
	var c vipConfig
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("vip.%s: "+format, append([]any{field}, args...)...))
	}
	prefix, err := parseVIPAddress(s.Address)
	if err != nil {
		bad("address", "%w", err)
	}
	c.prefix = prefix
	switch {
	case s.Interface == "":
		bad("interface", "required (a network interface name such as eth0)")
	case len(s.Interface) > maxLabelLen || s.Interface == "." || s.Interface == ".." ||
		strings.ContainsAny(s.Interface, "/: \t\n\x00"):
		bad("interface", "%q is not a network interface name (at most 15 characters, no '/', ':' or spaces)", s.Interface)
	}
	c.ifname = s.Interface
	if err := checkLabel(s.Label, s.Interface); err != nil {
		bad("label", "%w", err)
	}
	if len(errs) > 0 {
		return vipConfig{}, fmt.Errorf("%w: %w", ErrInvalidVIP, errors.Join(errs...))
	}
	if prefix.Addr().Is4() {
		c.label = s.Label
		if c.label == "" {
			c.label = defaultLabel(s.Interface)
		}
	}
	return c, nil
}

// parseVIPAddress parses vip.address and refuses addresses that cannot be a
// floating unicast IP.
func parseVIPAddress(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("required (an IP prefix such as 192.0.2.10/24 or 2001:db8::10/64)")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix (want address/length, e.g. 192.0.2.10/24)", s)
	}
	a := p.Addr()
	switch {
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped IPv6 address; write the IPv4 address", s)
	case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback(), a.IsLinkLocalUnicast():
		return netip.Prefix{}, fmt.Errorf("%q: want a unicast address (not unspecified, multicast, loopback or link-local)", s)
	case a.Is4() && p.Bits() <= 30 && (a == p.Masked().Addr() || !p.Contains(a.Next())):
		return netip.Prefix{}, fmt.Errorf("%q: is the network or broadcast address of its prefix", s)
	}
	return p, nil
}

// checkLabel validates vip.label: the kernel's 15 characters, and (like iproute2 and
// netlink) starting with the interface name. A label equal to the interface name is
// the interface's primary label: understudy could not tell its address apart.
func checkLabel(label, ifname string) error {
	switch {
	case label == "":
		return nil
	case len(label) > maxLabelLen || strings.ContainsAny(label, "/ \t\n\x00"):
		return fmt.Errorf("%q: want at most 15 characters without spaces or '/'", label)
	case ifname != "" && !strings.HasPrefix(label, ifname):
		return fmt.Errorf("%q: must begin with the interface name %q (e.g. %q)", label, ifname, defaultLabel(ifname))
	case label == ifname:
		return fmt.Errorf("%q: equals the interface name; add a suffix such as %q", label, defaultLabelSuffix)
	}
	return nil
}

// defaultLabel is "<ifname>:us" cut to 15 characters, or "" when nothing of the
// suffix fits (a 15-character interface name): then the address carries no label
// of its own and CleanupVIPs cannot recognise it.
func defaultLabel(ifname string) string {
	l := ifname + defaultLabelSuffix
	if len(l) > maxLabelLen {
		l = l[:maxLabelLen]
	}
	if l == ifname {
		return ""
	}
	return l
}

// labelMatches reports whether label, on interface ifname, marks an address as
// understudy's for CleanupVIPs: it starts with prefix, or it is exactly ifname +
// prefix (cut to 15 characters), so ":us" finds the default labels and nothing
// else. The primary label (== ifname) never matches.
func labelMatches(label, ifname, prefix string) bool {
	if label == "" || label == ifname || prefix == "" {
		return false
	}
	rel := ifname + prefix
	if len(rel) > maxLabelLen {
		rel = rel[:maxLabelLen]
	}
	return strings.HasPrefix(label, prefix) || label == rel
}

// appendMAC appends a copy of m to macs unless it is already there.
func appendMAC(macs []net.HardwareAddr, m net.HardwareAddr) []net.HardwareAddr {
	for _, x := range macs {
		if string(x) == string(m) {
			return macs
		}
	}
	return append(macs, append(net.HardwareAddr(nil), m...))
}

// Packet codecs for arp_linux.go; they depend on no operating system, so they are
// fuzzed everywhere.

const (
	protoICMPv6 = 58 // IPv6 next header
	ethTypeARP  = 0x0806
	ethTypeIPv6 = 0x86dd

	arpRequest = 1
	arpReply   = 2
	arpLen     = 28 // Ethernet/IPv4 ARP payload

	ipv6HeaderLen = 40
	icmpv6NS      = 135
	icmpv6NA      = 136
	ndOptTargetLL = 2
	// ndHopLimit: receivers drop neighbour discovery with any other hop limit
	// (RFC 4861 7.1), which proves it was not routed.
	ndHopLimit = 255

	naFlagRouter   = 0x80
	naFlagOverride = 0x20
)

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpPacket builds an Ethernet/IPv4 ARP payload.
func arpPacket(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, arpLen)
	binary.BigEndian.PutUint16(b[0:], 1) // hardware: Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:14], sha)
	s4, t4 := spa.As4(), tpa.As4()
	copy(b[14:18], s4[:])
	copy(b[18:24], tha)
	copy(b[24:28], t4[:])
	return b
}

// arpMsg is a parsed Ethernet/IPv4 ARP payload.
type arpMsg struct {
	op       uint16
	sha, tha net.HardwareAddr
	spa, tpa netip.Addr
}

func parseARP(b []byte) (arpMsg, bool) {
	if len(b) < arpLen || binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != 0x0800 ||
		b[4] != 6 || b[5] != 4 {
		return arpMsg{}, false
	}
	return arpMsg{
		op:  binary.BigEndian.Uint16(b[6:]),
		sha: net.HardwareAddr(b[8:14:14]),
		spa: netip.AddrFrom4([4]byte(b[14:18])),
		tha: net.HardwareAddr(b[18:24:24]),
		tpa: netip.AddrFrom4([4]byte(b[24:28])),
	}, true
}

// neighborAdvert builds an ICMPv6 neighbour advertisement for target with the
// target link-layer address option; the checksum is left zero.
func neighborAdvert(target netip.Addr, mac net.HardwareAddr, flags byte) []byte {
	b := make([]byte, 32)
	b[0] = icmpv6NA
	b[4] = flags
	t := target.As16()
	copy(b[8:24], t[:])
	b[24], b[25] = ndOptTargetLL, 1 // length in units of 8 bytes
	copy(b[26:32], mac)
	return b
}

// dadSolicitation builds a whole IPv6 packet (AF_PACKET sends it as is): a neighbour
// solicitation for target from the unspecified address to its solicited-node
// group, and the group's MAC.
func dadSolicitation(target netip.Addr) ([]byte, net.HardwareAddr) {
	t := target.As16()
	dst := [16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]}
	pkt := make([]byte, ipv6HeaderLen+24)
	pkt[0] = 0x60 // version 6
	binary.BigEndian.PutUint16(pkt[4:], 24)
	pkt[6], pkt[7] = protoICMPv6, ndHopLimit
	copy(pkt[24:40], dst[:]) // source (8:24) stays ::
	icmp := pkt[ipv6HeaderLen:]
	icmp[0] = icmpv6NS
	copy(icmp[8:24], t[:])
	binary.BigEndian.PutUint16(icmp[2:], icmpv6Checksum([16]byte{}, dst, icmp))
	return pkt, net.HardwareAddr{0x33, 0x33, dst[12], dst[13], dst[14], dst[15]}
}

// icmpv6Checksum is the RFC 4443 checksum of msg (checksum field zero) with the
// IPv6 pseudo-header.
func icmpv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	sum := uint32(len(msg)) + protoICMPv6
	for _, b := range [][]byte{src[:], dst[:], msg} {
		for i := 0; i < len(b); i += 2 {
			w := uint32(b[i]) << 8
			if i+1 < len(b) {
				w |= uint32(b[i+1])
			}
			sum += w
		}
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// parseNA returns the target of an IPv6 packet carrying a neighbour advertisement.
func parseNA(pkt []byte) (netip.Addr, bool) {
	if len(pkt) < ipv6HeaderLen+24 || pkt[0]>>4 != 6 || pkt[6] != protoICMPv6 ||
		pkt[ipv6HeaderLen] != icmpv6NA || pkt[ipv6HeaderLen+1] != 0 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16([16]byte(pkt[ipv6HeaderLen+8 : ipv6HeaderLen+24])), true
}
