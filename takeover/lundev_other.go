//go:build !linux

package takeover

import (
	"context"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence/iscsi"
)

// LUNDevice is an iSCSI LUN exposed as a kernel block device (FUSE file + loop device).
// It needs Linux; see lundev_linux.go.
type LUNDevice struct{}

// AttachLUN returns ErrUnsupported: FUSE and loop devices are Linux-only here.
func AttachLUN(context.Context, *iscsi.Device, string, *zap.Logger) (*LUNDevice, error) {
	return nil, ErrUnsupported
}

// Path is "" on this operating system.
func (l *LUNDevice) Path() string { return "" }

// Detach has nothing to detach on this operating system.
func (l *LUNDevice) Detach(context.Context) error { return nil }

// CleanupLUNDevices has nothing to clean up on this operating system.
func CleanupLUNDevices(context.Context, string, *zap.Logger) error { return nil }
