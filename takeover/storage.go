package takeover

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// Fsck policies of storage.fsck.
const (
	FsckNone  = "none"  // never check
	FsckPreen = "preen" // repair what is safe to repair unattended (default)
	FsckCheck = "check" // read-only check; any problem fails the start
)

// Defaults of the storage resource's internal timings.
const (
	// defaultUnmountTimeout bounds Stop when its ctx has no deadline, so that a
	// holder stuck in the kernel cannot hang the agent forever.
	defaultUnmountTimeout = 30 * time.Second
	// defaultHolderTermGrace: processes holding the mount get SIGTERM first and
	// SIGKILL after this long (or at half of Stop's budget, if that is sooner).
	defaultHolderTermGrace = 10 * time.Second
	// toolKillGrace: an external tool (fsck, blkid) whose ctx ended gets SIGTERM,
	// then SIGKILL after this long. e2fsck stops at a safe point on SIGTERM.
	toolKillGrace = 5 * time.Second
)

// Storage is the "storage" resource: it checks and mounts the role's file system.
// It implements Resource.
//
// Start resolves storage.device (a /dev path, UUID=, LABEL= or WWN=), verifies
// that the device carries a storage.fstype signature and is not mounted yet, runs
// the storage.fsck policy, creates the mountpoint and mounts with mount(2), then
// verifies the mount in /proc/self/mountinfo. Any failure undoes the mount and the
// directories Start created.
//
// Stop unmounts everything at or under the mountpoint, whether or not this Storage
// mounted it (so the agent can clean up after a crash). On EBUSY it kills the
// processes that hold the file system (SIGTERM, then SIGKILL), and at its deadline
// detaches lazily and reports ErrStorageLazyUnmount. The agent's own process is
// never killed.
type Storage struct {
	spec lease.StorageSpec
	log  *zap.Logger
	opts mountOptions // parsed spec.Options

	// Timings, unexported so tests can shorten them.
	termGrace      time.Duration
	unmountTimeout time.Duration

	mu sync.Mutex // serialises Start, Stop and Check
}

// NewStorage validates spec and returns the storage resource for it. Errors name the
// field: storage.mountpoint: "mnt": want a clean absolute path other than /.
// An empty spec.Fsck means preen. log nil means zap.NewNop().
func NewStorage(spec lease.StorageSpec, log *zap.Logger) (*Storage, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if spec.Fsck == "" {
		spec.Fsck = FsckPreen
	}
	var errs []error
	if err := validDeviceSpec(spec.Device); err != nil {
		errs = append(errs, err)
	}
	if spec.FSType == "" || strings.ContainsAny(spec.FSType, " \t\n,/") {
		errs = append(errs, fmt.Errorf("storage.fstype: %q: want a file system type such as ext4 or xfs", spec.FSType))
	}
	mp := spec.Mountpoint
	if !path.IsAbs(mp) || path.Clean(mp) != mp || mp == "/" {
		errs = append(errs, fmt.Errorf("storage.mountpoint: %q: want a clean absolute path other than /", mp))
	}
	switch spec.Fsck {
	case FsckNone, FsckPreen, FsckCheck:
	default:
		errs = append(errs, fmt.Errorf("storage.fsck: %q: want none, preen or check", spec.Fsck))
	}
	opts, err := parseMountOptions(spec.Options)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Storage{spec: spec, log: log, opts: opts,
		termGrace: defaultHolderTermGrace, unmountTimeout: defaultUnmountTimeout}, nil
}

// validDeviceSpec checks the shape of storage.device.
func validDeviceSpec(dev string) error {
	switch {
	case strings.HasPrefix(dev, "iscsi://"):
		return fmt.Errorf("storage.device: %q: iscsi:// devices are not supported by the storage resource "+
			"(attach the LU with the kernel initiator and name it by UUID=, LABEL=, WWN= or /dev path): %w", dev, ErrUnsupported)
	case path.IsAbs(dev) && path.Clean(dev) == dev:
		return nil // /dev/...; other paths (an image file) only pass Check
	}
	for _, tag := range []string{"UUID=", "LABEL=", "WWN="} {
		if v, ok := strings.CutPrefix(dev, tag); ok && v != "" && !strings.ContainsAny(v, "\n\x00") {
			return nil
		}
	}
	return fmt.Errorf("storage.device: %q: want a /dev path, UUID=, LABEL= or WWN=", dev)
}

// Name implements Resource.
func (s *Storage) Name() string { return "storage" }

// Start mounts the file system as the type documentation describes. ctx bounds the
// device lookup and fsck; mount(2) itself cannot be interrupted.
func (s *Storage) Start(ctx context.Context, rc RoleContext) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mp := s.spec.Mountpoint
	log := rc.logger().With(zap.String("mountpoint", mp))
	t0 := time.Now()
	dev, err := s.usableDevice(ctx, true)
	if err != nil {
		return err
	}
	if err := refuseMounted(dev, mp); err != nil {
		return err
	}
	tFsck := time.Now()
	if err := s.fsck(ctx, dev, log); err != nil {
		return err
	}
	fsckTime := time.Since(tFsck)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("takeover: storage mount %s on %s: %w", dev, mp, err)
	}
	created, err := mkdirAll(mp)
	if err != nil {
		return fmt.Errorf("takeover: storage mkdir %s: %w", mp, err)
	}
	tMount := time.Now()
	if err := s.mountAndVerify(dev, log); err != nil {
		removeCreated(created, log)
		return err
	}
	log.Info("storage mounted", zap.String("device", dev), zap.String("fstype", s.spec.FSType),
		zap.String("fsck", s.spec.Fsck), zap.Duration("fsck_time", fsckTime),
		zap.Duration("mount_time", time.Since(tMount)), zap.Duration("total", time.Since(t0)))
	return nil
}

// mountAndVerify mounts dev and checks the result in mountinfo; a mount that is
// not what was asked for is undone.
func (s *Storage) mountAndVerify(dev string, log *zap.Logger) error {
	mp := s.spec.Mountpoint
	if err := mount(dev, mp, s.spec.FSType, s.opts); err != nil {
		return fmt.Errorf("takeover: storage mount %s on %s (type %s, options %q): %w", dev, mp, s.spec.FSType, s.spec.Options, err)
	}
	verr := verifyMounted(dev, mp, s.spec.FSType)
	if verr == nil {
		return nil
	}
	// The undo runs on its own bounded context: Start's ctx may be what failed.
	uctx, cancel := context.WithTimeout(context.Background(), s.unmountTimeout)
	defer cancel()
	uerr := unmountAll(uctx, mp, s.termGrace, log)
	return errors.Join(fmt.Errorf("takeover: storage verify mount %s on %s: %w", dev, mp, verr), uerr)
}

// Stop unmounts everything at or under the mountpoint (see the type documentation).
// Not mounted is success. Without a ctx deadline Stop is bounded by 30s.
func (s *Storage) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.unmountTimeout)
		defer cancel()
	}
	return unmountAll(ctx, s.spec.Mountpoint, s.termGrace, s.log.With(zap.String("mountpoint", s.spec.Mountpoint)))
}

// Check is the storage part of a node's qualification. It never mounts and never
// writes: the device must resolve, be a block device (a regular file is accepted,
// for images), carry a storage.fstype signature (blkid -p, read-only), the fsck
// tool of the policy must be installed, and an existing mountpoint must be a
// directory. Errors name the spec field.
func (s *Storage) Check(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.usableDevice(ctx, false); err != nil {
		return err
	}
	if tool := fsckTool(s.spec.Fsck, s.spec.FSType); tool != "" {
		if _, err := lookPathSbin(tool); err != nil {
			return fmt.Errorf("storage.fsck: %q needs %s, which is not installed: %w", s.spec.Fsck, tool, err)
		}
	}
	fi, err := os.Stat(s.spec.Mountpoint)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // Start creates it
	case err != nil:
		return fmt.Errorf("storage.mountpoint: %q: %w", s.spec.Mountpoint, err)
	case !fi.IsDir():
		return fmt.Errorf("storage.mountpoint: %q: exists and is not a directory", s.spec.Mountpoint)
	}
	return nil
}

// usableDevice resolves storage.device, checks the node type (block device only
// when mounting; regular files too for Check) and the file system signature.
func (s *Storage) usableDevice(ctx context.Context, forMount bool) (string, error) {
	dev, err := resolveDevice(ctx, s.spec.Device)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(dev)
	if err != nil {
		return "", fmt.Errorf("storage.device: %q: %s: %w", s.spec.Device, dev, err)
	}
	isBlock := fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0
	if !isBlock && (forMount || !fi.Mode().IsRegular()) {
		return "", fmt.Errorf("storage.device: %q: %s is not a block device (mode %v)", s.spec.Device, dev, fi.Mode())
	}
	typ, err := probeFSType(ctx, dev)
	if err != nil {
		return "", fmt.Errorf("storage.device: %q: %w", s.spec.Device, err)
	}
	if typ != s.spec.FSType {
		have := typ
		if have == "" {
			have = "no file system signature"
		}
		return "", fmt.Errorf("storage.fstype: %s (storage.device %q) has %s, spec wants %s: %w",
			dev, s.spec.Device, have, s.spec.FSType, ErrStorageFSType)
	}
	return dev, nil
}

// CleanupMounts unmounts whatever is mounted at or under each of mountpoints, as
// Storage.Stop does (holders killed, lazy unmount at ctx's deadline). The agent
// calls it at start-up for the mountpoints of roles it does not hold, to remove the
// leftovers of a crash. Not mounted is success; errors are joined.
func CleanupMounts(ctx context.Context, mountpoints []string, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	var errs []error
	for _, mp := range mountpoints {
		if !path.IsAbs(mp) || path.Clean(mp) != mp || mp == "/" {
			errs = append(errs, fmt.Errorf("takeover: cleanup mounts: %q: want a clean absolute path other than /", mp))
			continue
		}
		if err := unmountAll(ctx, mp, defaultHolderTermGrace, log.With(zap.String("mountpoint", mp))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mkdirAll is os.MkdirAll that returns the directories it created, deepest last.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := dir; d != "/"; d = path.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i, j := 0, len(missing)-1; i < j; i, j = i+1, j-1 {
		missing[i], missing[j] = missing[j], missing[i]
	}
	return missing, nil
}

// removeCreated removes the directories mkdirAll created, deepest first; a
// directory that is no longer empty is left alone.
func removeCreated(dirs []string, log *zap.Logger) {
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil {
			log.Warn("storage: could not remove the mountpoint directory it created", zap.String("dir", dirs[i]), zap.Error(err))
			return
		}
	}
}

// fsckTool is the checker program the policy needs for fstype ("" = none needed):
// the fsck(8) back end for ext*, xfs_repair for xfs. Other types are checked when
// their fsck.<type> is installed and skipped otherwise.
func fsckTool(policy, fstype string) string {
	switch {
	case policy == FsckNone:
		return ""
	case fstype == "xfs":
		return "xfs_repair"
	case isExtFS(fstype):
		return "fsck." + fstype
	}
	return ""
}

func isExtFS(fstype string) bool { return fstype == "ext2" || fstype == "ext3" || fstype == "ext4" }

// fsck runs the storage.fsck policy on dev (see fsckVerdict and xfsVerdict).
// fsck(8) runs the back end for ext* and other types ("-p" preen, "-n" check);
// xfs uses "xfs_repair -n" for both policies, because XFS repairs itself by
// replaying its log at mount and xfs_repair must not run unattended.
func (s *Storage) fsck(ctx context.Context, dev string, log *zap.Logger) error {
	policy, fstype := s.spec.Fsck, s.spec.FSType
	if policy == FsckNone {
		return nil
	}
	var argv []string
	switch {
	case fstype == "xfs":
		argv = []string{"xfs_repair", "-n", dev}
	default:
		if _, err := lookPathSbin("fsck." + fstype); err != nil {
			if isExtFS(fstype) {
				return fmt.Errorf("storage.fsck: %q: fsck.%s is not installed: %w", policy, fstype, ErrStorageFsck)
			}
			log.Info("storage: no fsck for this file system type; skipping the check", zap.String("fstype", fstype))
			return nil
		}
		flag := "-p"
		if policy == FsckCheck {
			flag = "-n"
		}
		argv = []string{"fsck", "-T", "-t", fstype, flag, dev}
	}
	t := time.Now()
	out, code, err := runTool(ctx, argv...)
	if err != nil {
		return fmt.Errorf("takeover: storage %s: %w: %w", strings.Join(argv, " "), ErrStorageFsck, err)
	}
	verdict, warn := fsckVerdict(code)
	if fstype == "xfs" {
		verdict, warn = xfsVerdict(code, out)
	}
	fields := []zap.Field{zap.Strings("argv", argv), zap.Int("exit", code),
		zap.Duration("duration", time.Since(t)), zap.String("output", lastLines(out, 20))}
	switch {
	case verdict != "":
		return fmt.Errorf("takeover: storage %s: exit status %d (%s): %w; output: %q",
			strings.Join(argv, " "), code, verdict, ErrStorageFsck, lastLines(out, 10))
	case warn != "":
		log.Warn("storage fsck: "+warn, fields...)
	default:
		log.Info("storage fsck passed", fields...)
	}
	return nil
}

// fsckVerdict interprets an fsck(8) exit status, a bit mask: 0 clean, 1 errors
// corrected, 2 reboot advised (meaningful for the root file system only, so it
// passes with a warning), 4 and up fail. verdict is "" when the mount may go on.
func fsckVerdict(code int) (verdict, warn string) {
	if code < 0 {
		return "killed by a signal", ""
	}
	var failed []string
	for _, b := range []struct {
		bit  int
		what string
	}{{4, "errors left uncorrected"}, {8, "operational error"}, {16, "usage or syntax error"},
		{32, "cancelled by user request"}, {128, "shared library error"}} {
		if code&b.bit != 0 {
			failed = append(failed, b.what)
		}
	}
	switch {
	case len(failed) > 0:
		return strings.Join(failed, ", "), ""
	case code&2 != 0:
		return "", "fsck advised a reboot (only meaningful for the root file system); mounting anyway"
	case code&1 != 0:
		return "", "fsck corrected file system errors"
	}
	return "", ""
}

// xfsVerdict interprets "xfs_repair -n": 0 clean, 1 corruption found. A dirty log
// (the normal state after the previous holder crashed) makes -n report spurious
// problems, or exit 2 in some versions; the mount replays the log, so that case
// passes with a warning instead of blocking every failover.
func xfsVerdict(code int, out []byte) (verdict, warn string) {
	dirtyLog := strings.Contains(string(out), "metadata changes in a log")
	switch {
	case code == 0:
		return "", ""
	case code == 2 || (code == 1 && dirtyLog):
		return "", "xfs log is dirty (previous holder did not unmount); the mount will replay it, check skipped"
	case code == 1:
		return "file system corruption detected; repair it by hand with xfs_repair", ""
	case code < 0:
		return "killed by a signal", ""
	}
	return "xfs_repair failed", ""
}

// parseBlkidExport parses "blkid -o export" output (KEY=value lines, values with
// shell-unsafe characters backslash-escaped) of one device.
func parseBlkidExport(out []byte) map[string]string {
	m := make(map[string]string)
	for line := range strings.Lines(string(out)) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), "=")
		if !ok || k == "" {
			continue
		}
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		m[k] = b.String()
	}
	return m
}

// lastLines returns the last n lines of out, for logs and error messages.
func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
