//go:build linux

package takeover

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
)

// The VIP's duplicate-address probe, begun early by Prepare (see Chain.Start's
// preparer) and judged by checkAnswers.

// vipProbe is a duplicate-address probe Prepare began and Start (or Abort) ends.
type vipProbe struct {
	h      *netlink.Handle
	ifc    ifaceInfo
	cancel context.CancelFunc
	done   chan struct{} // closed when the probe finished; then macs and err are set
	macs   []net.HardwareAddr
	err    error
}

// Prepare begins the duplicate-address probe so that it runs while the resources
// before the VIP start (storage, exec): the probe waits a fixed window, whatever else
// happens. Sockets are opened here, in the caller's network namespace; only the wait
// runs on a goroutine, which Start or Abort ends. A failure here is left to Start,
// which then does everything itself.
func (v *VIP) Prepare(ctx context.Context, rc RoleContext) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	if v.run != nil || v.pending != nil {
		return
	}
	log := rc.logger().With(zap.String("vip", v.cfg.prefix.String()), zap.String("interface", v.cfg.ifname))
	h, ifc, err := v.openInterface()
	if err != nil {
		return
	}
	if _, err := v.removeLeftover(h, ifc, log); err != nil {
		h.Close()
		return
	}
	pr, err := newProber(ifc, v.cfg.prefix.Addr())
	if err != nil {
		h.Close()
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	pp := &vipProbe{h: h, ifc: ifc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(pp.done)
		defer pr.s.Close()
		pp.macs, pp.err = pr.run(pctx, ifc.mac, v.probeWindow)
		if pp.err != nil {
			pp.err = fmt.Errorf("vip %s: probe on %s: %w", v.cfg.prefix.Addr(), ifc.name, pp.err)
		}
	}()
	v.pending = pp
}

// Abort ends a probe Prepare began when Start will not run (an earlier resource
// failed). A no-op otherwise.
func (v *VIP) Abort() {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	if pp := v.pending; pp != nil {
		v.pending = nil
		pp.cancel()
		<-pp.done
		pp.h.Close()
	}
}

// checkAnswers fails with an *AnsweredError when a host other than the allowed ones
// (AllowAnsweredBy, the fenced previous holder) answered the probe.
func (v *VIP) checkAnswers(ctx context.Context, ifc ifaceInfo, macs, fenced []net.HardwareAddr, log *zap.Logger) error {
	var foreign []net.HardwareAddr
	for _, m := range macs {
		allowed := func(a net.HardwareAddr) bool { return bytes.Equal(a, m) }
		if slices.ContainsFunc(v.AllowAnsweredBy, allowed) || slices.ContainsFunc(fenced, allowed) {
			log.Info("vip still answered by an allowed host (the fenced previous holder)", zap.String("mac", m.String()))
			continue
		}
		foreign = append(foreign, m)
	}
	if len(foreign) > 0 {
		return &AnsweredError{Address: v.cfg.prefix.Addr(), Interface: ifc.name, MACs: foreign}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vip %s: %w", v.cfg.prefix.Addr(), err)
	}
	return nil
}
