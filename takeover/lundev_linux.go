//go:build linux

package takeover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/understudy-ha/understudy/fence/iscsi"
	"github.com/understudy-ha/understudy/fence/scsi"
)

// A LUN device is the storage path of a node without a kernel iSCSI initiator: the LUN
// is reached through the node's OWN userspace iSCSI session (the I_T nexus that holds its
// reservation key), served as the single file <dir>/lun of a FUSE file system, and that
// file backs a loop device the storage step mounts. Every block the file system writes
// becomes a WRITE(16) on that session, so once another node preempted our key the target
// answers RESERVATION CONFLICT, the FUSE server answers EIO, and ext4 aborts its journal:
// the fence is enforced by the target, not by our timing.
//
// Choices, and why:
//
//   - Loop setup uses ioctls (LOOP_CTL_GET_FREE, then LOOP_CONFIGURE: fd, block size and
//     flags in one call, so the device is never bound without its settings) instead of
//     losetup(8): no fork/exec while holding a role, exact errnos, the loop number without
//     parsing output. LO_FLAGS_AUTOCLEAR stays off: the device must outlive our own file
//     descriptors and be detached by Detach, in order. LO_FLAGS_DIRECT_IO is asked for;
//     the FUSE file is also opened with FOPEN_DIRECT_IO, so in either case nothing is
//     cached in the FUSE file's page cache and a write the loop device completes has
//     reached the target (and its error has reached ext4).
//   - The FUSE mount is a direct mount(2) (DirectMountStrict: no fusermount), nosuid,
//     nodev, noexec, without allow_other (only root's processes reach the server). Entry
//     and attribute timeouts are long (lunCacheTimeout), not short: the one file never
//     changes, and cached lookups and attributes mean a stat(2) of the mountpoint by any
//     tool does not become a request a stuck server could hold. Extended attributes,
//     security labels and READDIRPLUS are off (fewer request kinds, none needed).
//     MaxWrite is 1 MiB, the most one WRITE(16) of the initiator moves.
//   - Every iSCSI command of the server runs under its own timeout (lunIOTimeout) and a
//     context Detach cancels; any failure is EIO. A stuck target therefore delays a
//     request by at most lunIOTimeout plus the initiator's ABORT TASK bound, never
//     forever, and the kernel never waits on a server that waits on the kernel: the
//     server only talks to the target over TCP and never touches the file system it
//     serves.
//   - Teardown is loop first, FUSE second (Detach). A forced FUSE unmount uses
//     MNT_FORCE|MNT_DETACH: MNT_FORCE makes the kernel abort the FUSE connection
//     (fuse_umount_begin), which is what writing 1 to /sys/fs/fuse/connections/N/abort
//     does, without needing fusectl mounted; the connection number is logged for an
//     operator anyway.
const (
	lunFileName     = "lun"
	lunFSName       = "understudy-lun" // mounts show as fstype fuse.understudy-lun
	lunIOTimeout    = 10 * time.Second
	lunMaxWrite     = 1 << 20
	lunMaxBg        = 64 // background requests (readahead, async I/O) the kernel may queue
	lunCacheTimeout = time.Hour
	lunPoll         = 20 * time.Millisecond
	// lunDrainGrace bounds how long Detach still waits for the server's goroutines after
	// its ctx ended and the in-flight iSCSI commands were cancelled: the initiator then
	// needs at most its ABORT TASK timeout (iscsi.DefaultAbortTimeout) to return.
	lunDrainGrace = 3 * iscsi.DefaultAbortTimeout
	loopMajor     = 7
)

// lunConfig are the knobs tests shorten.
type lunConfig struct{ ioTimeout time.Duration }

// LUNDevice is an iSCSI LUN exposed as a kernel block device (FUSE file + loop device).
// It owns the FUSE server's goroutines; Detach stops them and waits for them.
type LUNDevice struct {
	dir, file, path  string // FUSE mountpoint, backing file, /dev/loopN
	loop             int
	fileDev, fileIno uint64 // identity of the backing file, to recognise our binding
	conn             uint32 // FUSE connection: /sys/fs/fuse/connections/<conn>
	log              *zap.Logger
	srv              *fuse.Server
	fsFile           *lunFile
	served           chan struct{}      // closed when srv.Serve returned
	cancel           context.CancelFunc // ends every iSCSI command of the server, now and later

	mu                     sync.Mutex // serialises Detach
	loopGone, fuseGone, ok bool       // guarded by mu: teardown steps done
}

// AttachLUN serves dev as the file <dir>/lun over FUSE and attaches it to a free loop
// device. dir is a private directory for the FUSE mountpoint (created if missing; it
// must not be a mountpoint yet). It returns once /dev/loopN exists and is bound; on
// error nothing is left behind.
func AttachLUN(ctx context.Context, dev *iscsi.Device, dir string, log *zap.Logger) (*LUNDevice, error) {
	return attachLUN(ctx, dev, dir, log, lunConfig{ioTimeout: lunIOTimeout})
}

func attachLUN(ctx context.Context, dev *iscsi.Device, dir string, log *zap.Logger, cfg lunConfig) (*LUNDevice, error) {
	switch {
	case dev == nil:
		return nil, errors.New("takeover: attach LUN: dev: must not be nil")
	case !filepath.IsAbs(dir):
		return nil, fmt.Errorf("takeover: attach LUN: dir: %q must be an absolute path", dir)
	}
	if log == nil {
		log = zap.NewNop()
	}
	dir = filepath.Clean(dir)
	if err := lunPrepareDir(dir); err != nil {
		return nil, err
	}
	l := &LUNDevice{dir: dir, file: filepath.Join(dir, lunFileName), log: log.With(zap.String("lun_dir", dir))}
	start := time.Now()
	if err := l.serve(dev, cfg); err != nil {
		_ = os.Remove(dir) // only if empty: it was created for us
		return nil, err
	}
	if err := l.attachLoop(ctx, dev.BlockSize()); err != nil {
		// Own bound: the caller's ctx may be what failed, and the server must go.
		cctx, cancel := context.WithTimeout(context.Background(), lunDrainGrace)
		defer cancel()
		l.loopGone = true
		return nil, errors.Join(err, l.Detach(cctx))
	}
	l.log.Info("LUN attached", zap.String("device", l.path), zap.Int64("bytes", dev.Size()),
		zap.Int("block_size", dev.BlockSize()), zap.Bool("direct_io", loopDirectIO(l.loop)),
		zap.Uint32("fuse_connection", l.conn), zap.Duration("took", time.Since(start)))
	return l, nil
}

func lunPrepareDir(dir string) error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("takeover: attach LUN: FUSE unavailable (modprobe fuse): %w", err)
	}
	// Before MkdirAll: a dead FUSE mount left by a crash fails stat with ENOTCONN.
	ms, err := readMountinfo()
	if err != nil {
		return err
	}
	if m := mountsUnder(ms, dir); len(m) > 0 {
		return fmt.Errorf("takeover: attach LUN: %s already has a mount (%s; leftover? see CleanupLUNDevices): %w",
			dir, m[0].fstype, ErrStorageMounted)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("takeover: attach LUN: %w", err)
	}
	return nil
}

// serve mounts the FUSE file system on l.dir and starts its server goroutine.
func (l *LUNDevice) serve(dev *iscsi.Device, cfg lunConfig) error {
	ioctx, cancel := context.WithCancel(context.Background())
	file := &lunFile{dev: dev, base: ioctx, timeout: cfg.ioTimeout, log: l.log}
	cache := lunCacheTimeout
	stdlog, err := zap.NewStdLogAt(l.log.Named("fuse"), zap.WarnLevel)
	if err != nil {
		cancel()
		return fmt.Errorf("takeover: attach LUN: %w", err)
	}
	opts := &fs.Options{
		EntryTimeout: &cache, AttrTimeout: &cache, NegativeTimeout: &cache,
		Logger: stdlog,
		MountOptions: fuse.MountOptions{
			FsName: lunFSName, Name: lunFSName,
			DirectMountStrict:    true,
			DirectMountFlags:     unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME,
			MaxWrite:             lunMaxWrite,
			MaxBackground:        lunMaxBg,
			DisableXAttrs:        true,
			IgnoreSecurityLabels: true,
			DisableReadDirPlus:   true,
			Logger:               stdlog,
		},
	}
	// go-fuse's direct mount opens /dev/fuse without close-on-exec, so every child the
	// agent starts (fsck, the role's executable) would inherit it and keep the FUSE
	// connection alive after the agent died: the kernel then waits forever on requests
	// nobody serves (a killed agent stuck in D state, sync and blkid hanging). Set it,
	// holding ForkLock so no fork can happen between the open and the flag.
	syscall.ForkLock.RLock()
	srv, err := fuse.NewServer(fs.NewNodeFS(&lunRoot{file: file}, opts), l.dir, &opts.MountOptions)
	closeOnExecDevFuse()
	syscall.ForkLock.RUnlock()
	if err != nil {
		cancel()
		// go-fuse leaves the mount behind when the INIT handshake fails.
		_ = unix.Unmount(l.dir, unix.MNT_FORCE|unix.MNT_DETACH)
		return fmt.Errorf("takeover: attach LUN: mount FUSE on %s: %w", l.dir, err)
	}
	l.srv, l.fsFile, l.cancel, l.served = srv, file, cancel, make(chan struct{})
	go func() {
		defer close(l.served)
		srv.Serve()
	}()
	if err := srv.WaitMount(); err != nil {
		cctx, ccancel := context.WithTimeout(context.Background(), lunDrainGrace)
		defer ccancel()
		l.loopGone = true
		return errors.Join(fmt.Errorf("takeover: attach LUN: mount FUSE on %s: %w", l.dir, err), l.Detach(cctx))
	}
	var st unix.Stat_t
	if err := unix.Stat(l.dir, &st); err == nil {
		l.conn = unix.Minor(st.Dev) // anonymous superblock: major 0, the connection is the minor
	}
	return nil
}

// attachLoop binds l.file to a free loop device.
func (l *LUNDevice) attachLoop(ctx context.Context, blockSize int) error {
	backing, err := os.OpenFile(l.file, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("takeover: attach LUN: open %s: %w", l.file, err)
	}
	defer backing.Close() // the loop device holds its own reference
	var st unix.Stat_t
	if err := unix.Fstat(int(backing.Fd()), &st); err != nil {
		return fmt.Errorf("takeover: attach LUN: stat %s: %w", l.file, err)
	}
	l.fileDev, l.fileIno = st.Dev, st.Ino
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("takeover: attach LUN: %w", err)
	}
	defer ctl.Close()
	for attempt := 1; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("takeover: attach LUN: LOOP_CTL_GET_FREE: %w", err)
		}
		err = configureLoop(n, backing, blockSize, l.file)
		// EBUSY: another process bound the free device between GET_FREE and CONFIGURE.
		if err == nil || !errors.Is(err, unix.EBUSY) || attempt == 10 || ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("takeover: attach LUN: %w", err)
			}
			l.loop, l.path = n, "/dev/loop"+strconv.Itoa(n)
			return nil
		}
	}
}

func configureLoop(n int, backing *os.File, blockSize int, name string) error {
	f, err := openLoop(n)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Size: uint32(blockSize)}
	cfg.Info.Flags = unix.LO_FLAGS_DIRECT_IO // recent kernels drop it if the file cannot do it
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], name)
	err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
	if errors.Is(err, unix.EINVAL) { // kernels that refuse the flag here: configure, then ask
		cfg.Info.Flags = 0
		if err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg); err == nil {
			_ = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_DIRECT_IO, 1) // best effort; logged at attach
		}
	}
	if err != nil {
		return fmt.Errorf("LOOP_CONFIGURE /dev/loop%d with %s: %w", n, name, err)
	}
	return nil
}

// openLoop opens /dev/loopN, creating the node from sysfs when /dev has no devtmpfs.
func openLoop(n int) (*os.File, error) {
	p := "/dev/loop" + strconv.Itoa(n)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	minor := uint32(n)
	if b, rerr := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/dev", n)); rerr == nil {
		if _, m, ok := strings.Cut(strings.TrimSpace(string(b)), ":"); ok {
			if v, perr := strconv.ParseUint(m, 10, 32); perr == nil {
				minor = uint32(v)
			}
		}
	}
	if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(loopMajor, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	return os.OpenFile(p, os.O_RDWR, 0)
}

// Path is the loop device, "/dev/loopN".
func (l *LUNDevice) Path() string { return l.path }

// Detach tears the device down in the only safe order; the caller must have unmounted
// the file system on Path first:
//
//  1. loop detach: LOOP_CLR_FD, then poll until /sys/block/loopN/loop/backing_file is
//     gone (with other openers -- a file system still mounted, a process holding the
//     device -- the kernel only detaches at their last close);
//  2. FUSE unmount; if the file stays busy until ctx ends, MNT_FORCE|MNT_DETACH;
//  3. wait for the server's goroutines.
//
// WARNING: when ctx ends before that, Detach cancels the server's iSCSI commands and
// every later I/O of the device fails with EIO, so a blocked LOOP_CLR_FD and the
// goroutines return in bounded time. If the loop device is still attached then (the file
// system was not unmounted, or lazily), the FUSE file system stays mounted -- never
// unmounted under a bound loop device -- and Detach returns an error; call it again once
// the holders are gone. Detach is idempotent and safe for concurrent use.
func (l *LUNDevice) Detach(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ok || l.srv == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, l.cancel)
	defer stop()
	if !l.loopGone {
		if err := l.detachLoop(ctx); err != nil {
			return err
		}
		l.loopGone = true
	}
	if !l.fuseGone {
		if err := l.unmountFUSE(ctx); err != nil {
			return err
		}
		l.fuseGone = true
	}
	if err := l.waitServer(ctx); err != nil {
		return err
	}
	l.cancel()
	_ = os.Remove(l.dir) // private and now empty; left if something else is in it
	l.ok = true
	l.log.Info("LUN detached", zap.String("device", l.path))
	return nil
}

func (l *LUNDevice) detachLoop(ctx context.Context) error {
	ours := func(n int, info *unix.LoopInfo64) bool { return info.Device == l.fileDev && info.Inode == l.fileIno }
	if err := clearLoop(l.loop, ours); err != nil {
		return fmt.Errorf("takeover: detach LUN %s: %w", l.path, err)
	}
	if err := waitLoopFree(ctx, l.loop, l.file); err != nil {
		return fmt.Errorf("takeover: detach LUN %s: %w", l.path, err)
	}
	return nil
}

// clearLoop sends LOOP_CLR_FD to loop n if ours accepts its binding; an unbound device
// (ENXIO) is already detached. The check runs on an open descriptor: while we hold it,
// the device cannot be detached and bound to another file in between, so a retried
// Detach never clears a device that now belongs to someone else.
func clearLoop(n int, ours func(n int, info *unix.LoopInfo64) bool) error {
	f, err := openLoop(n)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	switch {
	case errors.Is(err, unix.ENXIO):
		return nil
	case err != nil:
		return fmt.Errorf("LOOP_GET_STATUS64 /dev/loop%d: %w", n, err)
	case !ours(n, info):
		return nil
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("LOOP_CLR_FD /dev/loop%d: %w", n, err)
	}
	return nil
}

// loopFileName is the lo_file_name AttachLUN stored in the loop device (at most 63 bytes).
func loopFileName(n int) string {
	f, err := openLoop(n)
	if err != nil {
		return ""
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err != nil {
		return ""
	}
	return unix.ByteSliceToString(info.File_name[:])
}

// closeOnExecDevFuse sets close-on-exec on every /dev/fuse descriptor of this process.
func closeOnExecDevFuse() {
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}

func loopBacking(n int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/loop/backing_file", n))
	if err != nil {
		return "", false
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)"), true
}

func loopDirectIO(n int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/loop/dio", n))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// waitLoopFree polls until loop n is not bound to the file named file (sysfs shows
// the path), or ctx ends.
func waitLoopFree(ctx context.Context, n int, file string) error {
	tick := time.NewTicker(lunPoll)
	defer tick.Stop()
	for {
		if backing, bound := loopBacking(n); !bound || backing != file {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loop device still attached (still open or mounted; it detaches at its last close): %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// unmountFUSE unmounts l.dir, retrying while busy (a delayed release of the loop's
// reference, an unrelated opener); at ctx's end it aborts the connection and detaches.
func (l *LUNDevice) unmountFUSE(ctx context.Context) error {
	tick := time.NewTicker(lunPoll)
	defer tick.Stop()
	for {
		err := unix.Unmount(l.dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // EINVAL: not (or no longer) a mountpoint
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("takeover: detach LUN: unmount FUSE %s: %w", l.dir, err)
		}
		select {
		case <-ctx.Done():
			l.log.Warn("FUSE mount still busy; aborting the connection and detaching it lazily",
				zap.Uint32("fuse_connection", l.conn))
			if err := unix.Unmount(l.dir, unix.MNT_FORCE|unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("takeover: detach LUN: force unmount FUSE %s: %w", l.dir, err)
			}
			return nil
		case <-tick.C:
		}
	}
}

func (l *LUNDevice) waitServer(ctx context.Context) error {
	select {
	case <-l.served:
		return nil
	case <-ctx.Done():
	}
	l.cancel()
	t := time.NewTimer(lunDrainGrace)
	defer t.Stop()
	select {
	case <-l.served:
		return nil
	case <-t.C:
		return fmt.Errorf("takeover: detach LUN: FUSE server on %s did not stop %s after cancelling its I/O: %w",
			l.dir, lunDrainGrace, ctx.Err())
	}
}

// CleanupLUNDevices removes what a crashed agent left under dir: loop devices whose
// backing file is under dir are detached, then FUSE mounts of ours (fuse.understudy-lun)
// under dir are unmounted (lazily and aborted if busy). Call it after the file systems
// on those loop devices were unmounted (CleanupMounts) and before this process attaches
// any LUN under dir: it would tear that down too.
func CleanupLUNDevices(ctx context.Context, dir string, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("takeover: cleanup LUN devices: dir: %q must be an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	var errs []error
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range loops {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(filepath.Dir(p))), "loop"))
		backing, bound := loopBacking(n)
		// The backing path is as the attaching process saw it: an agent that ran in its
		// own mount namespace (ip netns exec, a container) shows "/lun" there once that
		// namespace is gone; the name we stored at attach time still tells.
		if err != nil || !bound || !(under(backing, dir) || under(loopFileName(n), dir)) {
			continue
		}
		log.Warn("detaching leftover loop device", zap.Int("loop", n), zap.String("backing_file", backing))
		err = clearLoop(n, func(n int, info *unix.LoopInfo64) bool {
			now, bound := loopBacking(n) // read again while clearLoop holds the device
			return bound && now == backing && (under(now, dir) || under(unix.ByteSliceToString(info.File_name[:]), dir))
		})
		if err == nil {
			err = waitLoopFree(ctx, n, backing)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("takeover: cleanup LUN devices: /dev/loop%d: %w", n, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // never unmount FUSE under a bound loop device
	}
	ms, err := readMountinfo()
	if err != nil {
		return err
	}
	for _, m := range mountsUnder(ms, dir) {
		if m.fstype != "fuse."+lunFSName {
			continue
		}
		log.Warn("unmounting leftover LUN FUSE mount", zap.String("mountpoint", m.mountpoint))
		err := unix.Unmount(m.mountpoint, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(m.mountpoint, unix.MNT_FORCE|unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("takeover: cleanup LUN devices: unmount %s: %w", m.mountpoint, err))
		}
	}
	return errors.Join(errs...)
}

// lunRoot is the FUSE root directory; its only entry is the LUN file.
type lunRoot struct {
	fs.Inode
	file *lunFile
}

var _ fs.NodeOnAdder = (*lunRoot)(nil)

func (r *lunRoot) OnAdd(ctx context.Context) {
	r.AddChild(lunFileName, r.NewPersistentInode(ctx, r.file, fs.StableAttr{Mode: syscall.S_IFREG}), false)
}

// lunFile is the LUN as a regular file. Its methods run on the server's goroutines and
// only ever talk to the target.
type lunFile struct {
	fs.Inode
	dev     *iscsi.Device
	base    context.Context // cancelled by Detach
	timeout time.Duration
	log     *zap.Logger

	errs     atomic.Uint64
	syncs    atomic.Uint64 // SYNCHRONIZE CACHE commands sent (flush, fsync)
	conflict atomic.Bool   // a RESERVATION CONFLICT was logged
}

var (
	_ fs.NodeOpener    = (*lunFile)(nil)
	_ fs.NodeGetattrer = (*lunFile)(nil)
	_ fs.NodeSetattrer = (*lunFile)(nil)
	_ fs.NodeReader    = (*lunFile)(nil)
	_ fs.NodeWriter    = (*lunFile)(nil)
	_ fs.NodeFlusher   = (*lunFile)(nil)
	_ fs.NodeFsyncer   = (*lunFile)(nil)
)

// Open bypasses the page cache (FOPEN_DIRECT_IO): a write is done when the target has it.
func (f *lunFile) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *lunFile) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(f.dev.Size())
	out.Blocks = out.Size / 512
	out.Blksize = uint32(f.dev.BlockSize())
	return 0
}

// Setattr refuses size changes (a LUN cannot be truncated); the rest is ignored.
func (f *lunFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && sz != uint64(f.dev.Size()) {
		return syscall.EINVAL
	}
	return f.Getattr(ctx, fh, out)
}

func (f *lunFile) Read(_ context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	ctx, cancel := context.WithTimeout(f.base, f.timeout)
	defer cancel()
	n, err := f.dev.ReadAtContext(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.fail("read", off, len(dest), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *lunFile) Write(_ context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	ctx, cancel := context.WithTimeout(f.base, f.timeout)
	defer cancel()
	n, err := f.dev.WriteAtContext(ctx, data, off)
	if err != nil {
		return uint32(n), f.fail("write", off, len(data), err)
	}
	return uint32(n), 0
}

func (f *lunFile) Flush(context.Context, fs.FileHandle) syscall.Errno { return f.sync("flush") }

func (f *lunFile) Fsync(context.Context, fs.FileHandle, uint32) syscall.Errno { return f.sync("fsync") }

// sync is SYNCHRONIZE CACHE: what the target acknowledged is on stable storage.
func (f *lunFile) sync(op string) syscall.Errno {
	ctx, cancel := context.WithTimeout(f.base, f.timeout)
	defer cancel()
	f.syncs.Add(1)
	if err := f.dev.Sync(ctx); err != nil {
		return f.fail(op, 0, 0, err)
	}
	return 0
}

// fail logs an I/O error (every reservation conflict, the first loudly; other errors
// at powers of two) and turns it into EIO for the kernel.
func (f *lunFile) fail(op string, off int64, n int, err error) syscall.Errno {
	count := f.errs.Add(1)
	fields := []zap.Field{zap.String("op", op), zap.Int64("offset", off), zap.Int("bytes", n),
		zap.Uint64("errors", count), zap.Error(err)}
	switch {
	case errors.Is(err, scsi.ErrReservationConflict):
		// Every rejected I/O is logged: each is a write a fenced node attempted and the
		// target refused, the evidence that fencing works (few: the file system stops
		// writing after its first failed journal commit).
		if !f.conflict.Swap(true) {
			f.log.Error("LUN rejects our I/O with RESERVATION CONFLICT: this node was fenced", fields...)
		} else {
			f.log.Warn("LUN rejects our I/O with RESERVATION CONFLICT again", fields...)
		}
	case count&(count-1) == 0:
		f.log.Warn("LUN I/O failed; returning EIO", fields...)
	}
	return syscall.EIO
}
