//go:build !linux

package takeover

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"go.uber.org/zap"
)

// The vip resource needs Linux (netlink, AF_PACKET). Elsewhere every operation
// that would touch the network fails with ErrUnsupported, and Stop has nothing to
// undo.

type vipRun struct{}

type vipProbe struct{}

// Prepare does nothing here: Start fails anyway.
func (v *VIP) Prepare(context.Context, RoleContext) {}

// Abort does nothing: nothing was prepared.
func (v *VIP) Abort() {}

// Start implements Resource; see vip_linux.go.
func (v *VIP) Start(ctx context.Context, rc RoleContext) error {
	return fmt.Errorf("vip %s: %w", v.cfg.prefix, ErrUnsupported)
}

// Stop implements Resource: nothing was started.
func (v *VIP) Stop(ctx context.Context) error { return nil }

// Check always fails: this node cannot hold a VIP.
func (v *VIP) Check(ctx context.Context) error {
	return fmt.Errorf("vip %s: %w", v.cfg.prefix, ErrUnsupported)
}

// Probe is not supported.
func (v *VIP) Probe(ctx context.Context) ([]net.HardwareAddr, error) {
	return nil, fmt.Errorf("vip %s: %w", v.cfg.prefix, ErrUnsupported)
}

// Cleanup is not supported.
func (v *VIP) Cleanup(ctx context.Context) (bool, error) {
	return false, fmt.Errorf("vip %s: %w", v.cfg.prefix, ErrUnsupported)
}

// CleanupVIPs is not supported.
func CleanupVIPs(ctx context.Context, labelPrefix string, log *zap.Logger) ([]netip.Prefix, error) {
	return nil, fmt.Errorf("takeover: CleanupVIPs: %w", ErrUnsupported)
}
