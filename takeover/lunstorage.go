package takeover

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// lunStorage is the storage step for a role whose device is an iscsi:// URL: the LUN is
// reached through this node's own userspace iSCSI session (the one its fence key is
// registered on), exposed to the kernel as a block device (FUSE file + loop device, see
// LUNDevice), then checked and mounted like any other device. So once another node has
// fenced this one, the target itself refuses its writes: fsync returns EIO and ext4
// aborts its journal. Used where the kernel has no iSCSI initiator (the lab).
type lunStorage struct {
	san   *san
	url   string // may carry a CHAP secret: used only to open the session
	shown string // url without the secret, for errors and logs
	dir   string // private directory for the FUSE mountpoint
	spec  lease.StorageSpec
	log   *zap.Logger

	lun   *LUNDevice // owned between Start and Stop
	inner *Storage
}

func newLUNStorage(s *san, spec lease.StorageSpec, stateDir, role string, log *zap.Logger) *lunStorage {
	return &lunStorage{san: s, url: spec.Device, shown: shownPath(spec.Device), dir: filepath.Join(stateDir, "lun", role), spec: spec, log: log}
}

// Name implements Resource.
func (l *lunStorage) Name() string { return "storage" }

// Start attaches the LUN and mounts it; on failure whatever it attached is detached.
func (l *lunStorage) Start(ctx context.Context, rc RoleContext) error {
	if l.lun != nil {
		return fmt.Errorf("takeover: storage %s: %w", l.shown, ErrStorageMounted)
	}
	sess, err := l.san.session(ctx, l.url)
	if err != nil {
		return err
	}
	dev, err := sess.Device(ctx)
	if err != nil {
		return fmt.Errorf("takeover: storage %s: %w", l.shown, err)
	}
	lun, err := AttachLUN(ctx, dev, l.dir, l.log)
	if err != nil {
		return fmt.Errorf("takeover: storage %s: %w", l.shown, err)
	}
	spec := l.spec
	spec.Device = lun.Path()
	inner, err := NewStorage(spec, l.log)
	if err == nil {
		err = inner.Start(ctx, rc)
	}
	if err != nil {
		return errors.Join(err, lun.Detach(context.WithoutCancel(ctx)))
	}
	l.lun, l.inner = lun, inner
	return nil
}

// Stop unmounts (killing holders, as Storage does) and then detaches the LUN, in that
// order: the loop device and the FUSE file must outlive the file system on them.
// Idempotent; without a Start it unmounts whatever is at the mountpoint and detaches
// LUN devices a crashed run left in this role's directory.
func (l *lunStorage) Stop(ctx context.Context) error {
	if l.inner == nil {
		err := unmountAll(ctx, l.spec.Mountpoint, defaultHolderTermGrace, l.log)
		return errors.Join(err, CleanupLUNDevices(ctx, l.dir, l.log))
	}
	if err := l.inner.Stop(ctx); err != nil {
		return err // still mounted: detaching the device under it would be worse
	}
	if err := l.lun.Detach(ctx); err != nil {
		return fmt.Errorf("takeover: storage %s: %w", l.shown, err)
	}
	l.lun, l.inner = nil, nil
	return nil
}

// Check is the read-only qualification probe: the LUN answers through this node's session
// and carries the spec's file system signature.
func (l *lunStorage) Check(ctx context.Context) error {
	sess, err := l.san.session(ctx, l.url)
	if err != nil {
		return err
	}
	dev, err := sess.Device(ctx)
	if err != nil {
		return fmt.Errorf("storage.device %s: %w", l.shown, err)
	}
	head := make([]byte, 4096)
	if _, err := dev.ReadAtContext(ctx, head, 0); err != nil {
		return fmt.Errorf("storage.device %s: read the superblock: %w", l.shown, err)
	}
	if got := fsSignature(head); got != l.spec.FSType && !(isExt(got) && isExt(l.spec.FSType)) {
		return fmt.Errorf("storage.fstype: %s carries %q, want %q: %w", l.shown, got, l.spec.FSType, ErrStorageFSType)
	}
	return nil
}

// fsSignature recognises the file systems the storage step supports from the first 4 KiB.
func fsSignature(b []byte) string {
	switch {
	case len(b) >= 4 && string(b[:4]) == "XFSB":
		return "xfs"
	case len(b) >= 1082 && binary.LittleEndian.Uint16(b[1080:]) == 0xEF53:
		return "ext4" // ext2/3/4 share the magic; fsck and mount tell them apart
	}
	return ""
}

func isExt(t string) bool { return t == "ext2" || t == "ext3" || t == "ext4" }
