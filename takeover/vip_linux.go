//go:build linux

package takeover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// vipRun is what a started VIP holds until Stop.
type vipRun struct {
	h      *netlink.Handle // opened by Start, so bound to Start's namespace
	ifc    ifaceInfo
	addr   *netlink.Addr
	cancel context.CancelFunc // stops the announcer
	done   chan struct{}      // closed when the announcer returned
}

// Start resolves the interface (it must exist, be up and have carrier), removes a
// leftover of a crashed run, probes for hosts answering for the address (failing
// with an *AnsweredError naming their MACs unless they are in AllowAnsweredBy or
// rc.FencedMACs), adds the address, and returns once the first announcement is sent;
// the rest of announceSchedule is sent by a goroutine that Stop ends. After Prepare,
// Start waits for the probe Prepare began instead of probing. Start leaves nothing
// behind on error.
func (v *VIP) Start(ctx context.Context, rc RoleContext) error {
	t0 := time.Now()
	v.opMu.Lock()
	defer v.opMu.Unlock()
	if v.run != nil {
		return fmt.Errorf("vip %s: %w", v.cfg.prefix, ErrVIPRunning)
	}
	log := rc.logger().With(zap.String("vip", v.cfg.prefix.String()), zap.String("interface", v.cfg.ifname))
	var h *netlink.Handle
	var ifc ifaceInfo
	var macs []net.HardwareAddr
	var err error
	if pp := v.pending; pp != nil {
		v.pending = nil
		<-pp.done
		h, ifc, macs, err = pp.h, pp.ifc, pp.macs, pp.err
	} else {
		if h, ifc, err = v.openInterface(); err != nil {
			return err
		}
		if _, err = v.removeLeftover(h, ifc, log); err == nil {
			macs, err = probe(ctx, ifc, v.cfg.prefix.Addr(), v.probeWindow)
		}
	}
	if err == nil {
		err = v.checkAnswers(ctx, ifc, macs, rc.FencedMACs, log)
	}
	if err != nil {
		h.Close()
		return err
	}
	r, err := v.add(h, ifc, log)
	if err != nil {
		h.Close()
		return err
	}
	v.firstAnnounce = time.Since(t0)
	v.run = r
	log.Info("vip added and announced", zap.Stringer("mac", ifc.mac), zap.Duration("first_announcement_after", v.firstAnnounce))
	return nil
}

// add adds the address, announces it once and starts the announcer; on error it
// removes the address again.
func (v *VIP) add(h *netlink.Handle, ifc ifaceInfo, log *zap.Logger) (*vipRun, error) {
	addr := v.netlinkAddr(v.cfg.prefix, ifc)
	if err := h.AddrAdd(nil, addr); err != nil {
		return nil, fmt.Errorf("vip %s: add to %s: %w", v.cfg.prefix, ifc.name, err)
	}
	a, err := newAnnouncer(ifc, v.cfg.prefix.Addr())
	if err == nil {
		if err = a.announce(); err != nil {
			_ = a.Close()
		}
	}
	if err != nil {
		err = fmt.Errorf("vip %s: announce on %s: %w", v.cfg.prefix.Addr(), ifc.name, err)
		if derr := delAddr(h, addr); derr != nil {
			err = errors.Join(err, fmt.Errorf("vip %s: undo add on %s: %w", v.cfg.prefix, ifc.name, derr))
		}
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &vipRun{h: h, ifc: ifc, addr: addr, cancel: cancel, done: make(chan struct{})}
	go announceLoop(ctx, a, v.schedule, time.Now(), r.done, log)
	return r, nil
}

// Stop ends the announcements and removes the address (one already gone is fine).
// It ignores ctx: removal is quick and must happen even when ctx is done, or two
// nodes would answer for the VIP. A failed removal is returned and retried by the
// next Stop. Idempotent.
func (v *VIP) Stop(ctx context.Context) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	r := v.run
	if r == nil {
		return nil
	}
	r.cancel()
	<-r.done // the announcer only blocks in a select on its ctx: this is prompt
	if err := delAddr(r.h, r.addr); err != nil {
		return fmt.Errorf("vip %s: remove from %s: %w", v.cfg.prefix, r.ifc.name, err)
	}
	r.h.Close()
	v.run = nil
	v.log.Info("vip removed", zap.Stringer("vip", v.cfg.prefix), zap.String("interface", r.ifc.name))
	return nil
}

// Check is the vip part of a node's qualification and disturbs nobody: the
// interface exists, is up and has carrier; TestAddress (if set) is free and can be
// added and removed; the VIP is answered by at most one host (the holder, or
// nobody): more answer a duplicate address, an *AnsweredError. Probe returns the
// MACs themselves for callers that know which one the holder should have.
func (v *VIP) Check(ctx context.Context) error {
	h, ifc, err := v.openInterface()
	if err != nil {
		return err
	}
	defer h.Close()
	if v.TestAddress.IsValid() {
		if err := v.checkTestAddress(ctx, h, ifc); err != nil {
			return err
		}
	}
	addr := v.cfg.prefix.Addr()
	macs, err := probe(ctx, ifc, addr, v.probeWindow)
	if err != nil {
		return fmt.Errorf("vip %s: %w", addr, err)
	}
	v.log.Info("vip qualification probe", zap.String("vip", addr.String()), zap.Stringers("answered_by", macs))
	if len(macs) > 1 {
		return &AnsweredError{Address: addr, Interface: ifc.name, MACs: macs}
	}
	return nil
}

// checkTestAddress proves that this node may add and remove addresses on ifc.
func (v *VIP) checkTestAddress(ctx context.Context, h *netlink.Handle, ifc ifaceInfo) error {
	p := v.TestAddress
	if p.Addr() == v.cfg.prefix.Addr() || p.Addr().Is4In6() {
		return fmt.Errorf("vip test address %s: must differ from the vip and not be IPv4-mapped", p)
	}
	macs, err := probe(ctx, ifc, p.Addr(), v.probeWindow)
	if err != nil {
		return fmt.Errorf("vip test address %s: %w", p.Addr(), err)
	}
	if len(macs) > 0 {
		return fmt.Errorf("vip test address: %w", &AnsweredError{Address: p.Addr(), Interface: ifc.name, MACs: macs})
	}
	addr := v.netlinkAddr(p, ifc)
	addr.Flags |= unix.IFA_F_NOPREFIXROUTE // no route churn for a moment's address
	if err := h.AddrAdd(nil, addr); err != nil {
		return fmt.Errorf("vip test address %s: add to %s: %w", p, ifc.name, err)
	}
	if err := delAddr(h, addr); err != nil {
		return fmt.Errorf("vip test address %s: remove from %s: %w", p, ifc.name, err)
	}
	return nil
}

// Probe asks the VIP's link who answers for the address (bounded by the probe
// window, about 250 ms) and returns their MACs, this node's own excepted. Nobody's
// neighbour cache changes. The caller decides whether an answer is acceptable.
func (v *VIP) Probe(ctx context.Context) ([]net.HardwareAddr, error) {
	h, ifc, err := v.openInterface()
	if err != nil {
		return nil, err
	}
	h.Close()
	macs, err := probe(ctx, ifc, v.cfg.prefix.Addr(), v.probeWindow)
	if err != nil {
		return nil, fmt.Errorf("vip %s: %w", v.cfg.prefix.Addr(), err)
	}
	return macs, nil
}

// Cleanup removes this VIP's address from its interface when a crashed run left it
// there, and reports whether it did; a started VIP is left alone (use Stop). IPv4
// addresses are removed only when they carry the VIP's label. WARNING: IPv6
// addresses have no labels, so any address equal to the VIP on the interface is
// removed; call Cleanup only on a node that does not hold the role.
func (v *VIP) Cleanup(ctx context.Context) (bool, error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	if v.run != nil || ctx.Err() != nil {
		return false, ctx.Err()
	}
	h, err := openNetlink()
	if err != nil {
		return false, fmt.Errorf("vip %s: %w", v.cfg.prefix, err)
	}
	defer h.Close()
	l, err := h.LinkByName(v.cfg.ifname)
	if isLinkNotFound(err) {
		return false, nil // no interface, no address
	} else if err != nil {
		return false, fmt.Errorf("vip %s: interface %s: %w", v.cfg.prefix, v.cfg.ifname, err)
	}
	ifc := ifaceInfo{index: l.Attrs().Index, name: l.Attrs().Name}
	return v.removeLeftover(h, ifc, v.log)
}

// CleanupVIPs removes the IPv4 addresses left by a crashed run, on every interface,
// and returns them. An address is understudy's when its label starts with
// labelPrefix ("eth0:web" finds the labels an operator set) or is exactly the
// interface name followed by labelPrefix (":us" finds the default labels,
// "eth0:us", and not "eth0:users"). An interface's primary label never matches.
// IPv6 addresses have no labels: use VIP.Cleanup for them.
//
// WARNING: run it only when this node holds no role, before it joins.
func CleanupVIPs(ctx context.Context, labelPrefix string, log *zap.Logger) ([]netip.Prefix, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if labelPrefix == "" {
		return nil, errors.New("takeover: CleanupVIPs: empty label prefix would match every label")
	}
	h, err := openNetlink()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	addrs, err := addrList(h, nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var removed []netip.Prefix
	var errs []error
	for _, a := range addrs {
		if err := ctx.Err(); err != nil {
			return removed, errors.Join(append(errs, err)...)
		}
		name := linkName(h, a.LinkIndex)
		if !labelMatches(a.Label, name, labelPrefix) {
			continue
		}
		p := ipNetPrefix(a.IPNet)
		if err := delAddr(h, &a); err != nil {
			errs = append(errs, fmt.Errorf("takeover: remove leftover vip %s (label %q) from %s: %w", p, a.Label, name, err))
			continue
		}
		log.Warn("removed leftover vip", zap.String("address", p.String()), zap.String("label", a.Label),
			zap.String("interface", name))
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// removeLeftover removes the VIP's address from ifc if it is there and ours (see
// Cleanup), so that Start can probe and add it afresh. The address configured any
// other way (another interface, another label) is ErrVIPInUse.
func (v *VIP) removeLeftover(h *netlink.Handle, ifc ifaceInfo, log *zap.Logger) (bool, error) {
	addr := v.cfg.prefix.Addr()
	addrs, err := addrList(h, nil, netlink.FAMILY_ALL)
	if err != nil {
		return false, fmt.Errorf("vip %s: %w", addr, err)
	}
	for _, a := range addrs {
		if ipNetPrefix(a.IPNet).Addr() != addr {
			continue
		}
		if a.LinkIndex != ifc.index || (addr.Is4() && (v.cfg.label == "" || a.Label != v.cfg.label)) {
			return false, fmt.Errorf("vip %s: already configured on %s (label %q), not by understudy: %w",
				addr, linkName(h, a.LinkIndex), a.Label, ErrVIPInUse)
		}
		if err := delAddr(h, &a); err != nil {
			return false, fmt.Errorf("vip %s: remove leftover from %s: %w", addr, ifc.name, err)
		}
		log.Warn("removed leftover vip of a previous run", zap.String("vip", a.IPNet.String()), zap.String("interface", ifc.name))
		return true, nil
	}
	return false, nil
}

// openInterface opens netlink in the calling thread's namespace and resolves the
// VIP's interface, which must exist, be up, have carrier and an Ethernet address.
// The caller closes h.
func (v *VIP) openInterface() (*netlink.Handle, ifaceInfo, error) {
	name, addr := v.cfg.ifname, v.cfg.prefix.Addr()
	h, err := openNetlink()
	if err != nil {
		return nil, ifaceInfo{}, fmt.Errorf("vip %s: %w", addr, err)
	}
	l, err := h.LinkByName(name)
	if err == nil {
		a := l.Attrs()
		switch {
		case a.Flags&net.FlagUp == 0:
			err = fmt.Errorf("vip %s: interface %s is down: %w", addr, name, ErrVIPInterface)
		case a.OperState == netlink.OperDown || a.OperState == netlink.OperLowerLayerDown || a.OperState == netlink.OperNotPresent:
			err = fmt.Errorf("vip %s: interface %s has no carrier (operational state %s): %w", addr, name, a.OperState, ErrVIPInterface)
		case len(a.HardwareAddr) != 6:
			err = fmt.Errorf("vip %s: interface %s has no Ethernet address (%s link), needed for ARP and neighbour discovery: %w",
				addr, name, l.Type(), ErrVIPInterface)
		default:
			return h, ifaceInfo{index: a.Index, name: a.Name, mac: a.HardwareAddr}, nil
		}
	} else if isLinkNotFound(err) {
		err = fmt.Errorf("vip %s: interface %s: not found: %w", addr, name, ErrVIPInterface)
	} else {
		err = fmt.Errorf("vip %s: interface %s: %w", addr, name, err)
	}
	h.Close()
	return nil, ifaceInfo{}, err
}

// netlinkAddr is p as the VIP adds it on ifc: IPv4 with the label, IPv6 without
// duplicate address detection so that it is usable at once (Start probed already).
func (v *VIP) netlinkAddr(p netip.Prefix, ifc ifaceInfo) *netlink.Addr {
	a := &netlink.Addr{
		IPNet:     &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		LinkIndex: ifc.index,
	}
	if p.Addr().Is4() {
		a.Label = v.cfg.label
	} else {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func openNetlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink socket timeout: %w", err)
	}
	return h, nil
}

// addrList lists addresses, retrying once when the dump was interrupted by a change.
func addrList(h *netlink.Handle, l netlink.Link, family int) ([]netlink.Addr, error) {
	addrs, err := h.AddrList(l, family)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		addrs, err = h.AddrList(l, family)
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	return addrs, nil
}

// delAddr removes a; an address or interface already gone is success.
func delAddr(h *netlink.Handle, a *netlink.Addr) error {
	err := h.AddrDel(nil, a)
	if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// linkName is the name of interface index, or "#<index>" if it is gone.
func linkName(h *netlink.Handle, index int) string {
	if l, err := h.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("#%d", index)
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// ipNetPrefix converts a netlink address to a prefix (IPv4 unmapped).
func ipNetPrefix(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits)
}
