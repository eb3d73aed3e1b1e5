//go:build linux

package takeover

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Raw-socket ARP and NDP for the vip resource: the announcements that make the
// link forget the previous holder's MAC, and the probe that asks who answers for
// an address. Every socket is non-blocking and registered with the Go runtime's
// poller, so reads honour deadlines and a cancelled ctx ends a probe at once.

// ifaceInfo is the resolved interface a VIP lives on.
type ifaceInfo struct {
	index int
	name  string
	mac   net.HardwareAddr // 6 bytes: only Ethernet-like links are supported
}

// sock is a non-blocking socket registered with the runtime poller.
type sock struct {
	f  *os.File
	rc syscall.RawConn
}

func openSock(domain, typ, proto int, name string) (*sock, error) {
	fd, err := unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("open %s socket: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name) // non-blocking fd: os registers it with the poller
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open %s socket: %w", name, err)
	}
	return &sock{f: f, rc: rc}, nil
}

// control runs fn on the descriptor (setsockopt, bind).
func (s *sock) control(fn func(fd int) error) error {
	var err error
	if cerr := s.rc.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

func (s *sock) sendto(b []byte, to unix.Sockaddr) error {
	var err error
	werr := s.rc.Write(func(fd uintptr) bool {
		for {
			err = unix.Sendto(int(fd), b, 0, to)
			if err != unix.EINTR {
				return err != unix.EAGAIN
			}
		}
	})
	if werr != nil {
		return werr
	}
	return err
}

// recvfrom reads one datagram; os.ErrDeadlineExceeded when the read deadline passed.
func (s *sock) recvfrom(b []byte) (int, unix.Sockaddr, error) {
	var (
		n    int
		from unix.Sockaddr
		err  error
	)
	rerr := s.rc.Read(func(fd uintptr) bool {
		for {
			n, from, err = unix.Recvfrom(int(fd), b, 0)
			if err != unix.EINTR {
				return err != unix.EAGAIN
			}
		}
	})
	if rerr != nil {
		return 0, nil, rerr
	}
	return n, from, err
}

func (s *sock) Close() error { return s.f.Close() }

// htons converts to network byte order, as sockaddr_ll wants its protocol.
func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}

// linkAddr is the sockaddr_ll of a frame of type ethType to mac on ifindex.
func linkAddr(ifindex int, ethType uint16, mac net.HardwareAddr) *unix.SockaddrLinklayer {
	sa := &unix.SockaddrLinklayer{Protocol: htons(ethType), Ifindex: ifindex, Halen: uint8(len(mac))}
	copy(sa.Addr[:], mac)
	return sa
}

// packetSock opens an AF_PACKET datagram socket (the kernel writes the link
// header). With ethType 0 it only sends. Otherwise filter (if any) is attached
// before the socket is bound to ifindex and ethType, so that nothing else is queued.
func packetSock(ifindex int, ethType uint16, filter []unix.SockFilter) (*sock, error) {
	s, err := openSock(unix.AF_PACKET, unix.SOCK_DGRAM, 0, "packet") // protocol 0: receives nothing
	if err != nil || ethType == 0 {
		return s, err
	}
	err = s.control(func(fd int) error {
		if len(filter) > 0 {
			prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
			if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
				return fmt.Errorf("attach filter: %w", err)
			}
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethType), Ifindex: ifindex})
	})
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("packet socket on ifindex %d: %w", ifindex, err)
	}
	return s, nil
}

// announcer sends one round of announcements for an address.
type announcer interface {
	announce() error
	Close() error
}

func newAnnouncer(ifc ifaceInfo, addr netip.Addr) (announcer, error) {
	if addr.Is4() {
		return newGARP(ifc, addr)
	}
	return newUnsolicitedNA(ifc, addr)
}

// announceLoop sends the announcements after the first one, at the offsets of the
// schedule from first, until done or ctx is cancelled (Stop). A failed send is
// logged: the next one may get through.
func announceLoop(ctx context.Context, a announcer, schedule []time.Duration, first time.Time, done chan<- struct{}, log *zap.Logger) {
	defer close(done)
	defer a.Close()
	for i, off := range schedule {
		if i == 0 {
			continue // sent by Start
		}
		t := time.NewTimer(time.Until(first.Add(off)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := a.announce(); err != nil {
			log.Warn("vip announcement failed", zap.Int("round", i+1), zap.Error(err))
		}
	}
}

// garp sends gratuitous ARP for an IPv4 address, as a request and as a reply:
// some hosts and appliances only learn from the one, some only from the other.
type garp struct {
	s              *sock
	to             *unix.SockaddrLinklayer
	request, reply []byte
}

func newGARP(ifc ifaceInfo, addr netip.Addr) (*garp, error) {
	s, err := packetSock(ifc.index, 0, nil)
	if err != nil {
		return nil, err
	}
	zero := make(net.HardwareAddr, 6)
	return &garp{
		s:       s,
		to:      linkAddr(ifc.index, ethTypeARP, broadcastMAC),
		request: arpPacket(arpRequest, ifc.mac, addr, zero, addr),
		// Linux takes a reply as gratuitous only when the target MAC equals the sender's.
		reply: arpPacket(arpReply, ifc.mac, addr, ifc.mac, addr),
	}, nil
}

func (g *garp) announce() error {
	if err := g.s.sendto(g.request, g.to); err != nil {
		return fmt.Errorf("send gratuitous ARP request: %w", err)
	}
	if err := g.s.sendto(g.reply, g.to); err != nil {
		return fmt.Errorf("send gratuitous ARP reply: %w", err)
	}
	return nil
}

func (g *garp) Close() error { return g.s.Close() }

// unsolicitedNA sends unsolicited neighbour advertisements with the override flag
// to all nodes, from the address itself, through an ICMPv6 raw socket (the kernel
// computes the checksum).
type unsolicitedNA struct {
	s   *sock
	to  *unix.SockaddrInet6
	msg []byte
}

func newUnsolicitedNA(ifc ifaceInfo, addr netip.Addr) (*unsolicitedNA, error) {
	s, err := openSock(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6, "icmpv6")
	if err != nil {
		return nil, err
	}
	err = s.control(func(fd int) error {
		var block unix.ICMPv6Filter // we only send: queue nothing
		for i := range block.Data {
			block.Data[i] = ^uint32(0)
		}
		return errors.Join(
			unix.SetsockoptICMPv6Filter(fd, unix.SOL_ICMPV6, unix.ICMPV6_FILTER, &block),
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, ndHopLimit),
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ndHopLimit),
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifc.index),
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0),
			unix.BindToDevice(fd, ifc.name),
			unix.Bind(fd, &unix.SockaddrInet6{Addr: addr.As16()}),
		)
	})
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("icmpv6 socket on %s from %s: %w", ifc.name, addr, err)
	}
	flags := byte(naFlagOverride)
	if ipv6Forwarding(ifc.name) {
		flags |= naFlagRouter // as the kernel does; clearing it would drop routes via us
	}
	return &unsolicitedNA{
		s:   s,
		to:  &unix.SockaddrInet6{Addr: netip.IPv6LinkLocalAllNodes().As16(), ZoneId: uint32(ifc.index)},
		msg: neighborAdvert(addr, ifc.mac, flags),
	}, nil
}

func (n *unsolicitedNA) announce() error {
	if err := n.s.sendto(n.msg, n.to); err != nil {
		return fmt.Errorf("send unsolicited neighbour advertisement: %w", err)
	}
	return nil
}

func (n *unsolicitedNA) Close() error { return n.s.Close() }

// ipv6Forwarding reads the interface's forwarding sysctl (of the calling thread's
// namespace); false when unreadable.
func ipv6Forwarding(ifname string) bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ifname + "/forwarding")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// naFilter passes ICMPv6 neighbour advertisements only (offsets from the IPv6
// header: AF_PACKET datagram sockets filter after the link header), so a probe
// does not copy every IPv6 packet of a busy link for its whole window.
var naFilter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 6}, // next header
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: unix.IPPROTO_ICMPV6},
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: ipv6HeaderLen}, // ICMPv6 type
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: icmpv6NA},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

// prober asks the link who answers for an address.
type prober struct {
	s     *sock
	query []byte
	to    *unix.SockaddrLinklayer
	// answer returns the MAC of the host a received packet shows answering, or nil.
	answer func(pkt []byte, from *unix.SockaddrLinklayer) net.HardwareAddr
}

// probe returns the MACs (other than ifc's own) of the hosts that answer for addr on
// ifc within window, in the order they answered. IPv4: an ARP probe (RFC 5227:
// sender 0.0.0.0, so no host updates its cache); IPv6: a duplicate address
// detection solicitation from :: (RFC 4862), which owners answer with an
// advertisement to all nodes. The query is sent twice (at 0 and window/2) in case
// one is lost. A ctx done before the window ends returns ctx's error.
func probe(ctx context.Context, ifc ifaceInfo, addr netip.Addr, window time.Duration) ([]net.HardwareAddr, error) {
	p, err := newProber(ifc, addr)
	if err != nil {
		return nil, err
	}
	defer p.s.Close()
	macs, err := p.run(ctx, ifc.mac, window)
	if err != nil {
		return nil, fmt.Errorf("probe %s on %s: %w", addr, ifc.name, err)
	}
	return macs, nil
}

// newProber opens the probe's socket (in the caller's network namespace) for addr.
func newProber(ifc ifaceInfo, addr netip.Addr) (*prober, error) {
	if addr.Is4() {
		return newARPProber(ifc, addr)
	}
	return newDADProber(ifc, addr)
}

func newARPProber(ifc ifaceInfo, addr netip.Addr) (*prober, error) {
	s, err := packetSock(ifc.index, ethTypeARP, nil)
	if err != nil {
		return nil, err
	}
	zero := make(net.HardwareAddr, 6)
	return &prober{
		s:     s,
		query: arpPacket(arpRequest, ifc.mac, netip.IPv4Unspecified(), zero, addr),
		to:    linkAddr(ifc.index, ethTypeARP, broadcastMAC),
		answer: func(pkt []byte, _ *unix.SockaddrLinklayer) net.HardwareAddr {
			if m, ok := parseARP(pkt); ok && m.spa == addr {
				return m.sha // a reply, or the owner's own announcement
			}
			return nil
		},
	}, nil
}

func newDADProber(ifc ifaceInfo, addr netip.Addr) (*prober, error) {
	s, err := packetSock(ifc.index, ethTypeIPv6, naFilter)
	if err != nil {
		return nil, err
	}
	pkt, dst := dadSolicitation(addr)
	return &prober{
		s:     s,
		query: pkt,
		to:    linkAddr(ifc.index, ethTypeIPv6, dst),
		answer: func(pkt []byte, from *unix.SockaddrLinklayer) net.HardwareAddr {
			if t, ok := parseNA(pkt); ok && t == addr && from.Halen == 6 {
				return net.HardwareAddr(from.Addr[:6:6]) // the advertiser's own frame
			}
			return nil
		},
	}, nil
}

func (p *prober) run(ctx context.Context, own net.HardwareAddr, window time.Duration) ([]net.HardwareAddr, error) {
	start := time.Now()
	end, resend := start.Add(window), start.Add(window/2)
	// Cancelling ctx moves the read deadline to now, which wakes the reader.
	stop := context.AfterFunc(ctx, func() { _ = p.s.f.SetReadDeadline(time.Now()) })
	defer stop()
	if err := p.s.sendto(p.query, p.to); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	var macs []net.HardwareAddr
	buf := make([]byte, 2048)
	for {
		now := time.Now()
		if !now.Before(end) {
			return macs, nil
		}
		if !resend.IsZero() && !now.Before(resend) {
			if err := p.s.sendto(p.query, p.to); err != nil {
				return nil, fmt.Errorf("send: %w", err)
			}
			resend = time.Time{}
		}
		next := end
		if !resend.IsZero() {
			next = resend
		}
		if err := p.s.f.SetReadDeadline(next); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil { // checked after arming: see AfterFunc above
			return nil, err
		}
		n, from, err := p.s.recvfrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if mac := p.answer(buf[:n], ll); mac != nil && string(mac) != string(own) {
			macs = appendMAC(macs, mac)
		}
	}
}
