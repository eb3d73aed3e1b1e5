//go:build linux

package takeover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// devRoots are the /dev and /sys trees devices are resolved in (tests use fakes).
type devRoots struct{ dev, sys string }

var hostRoots = devRoots{dev: "/dev", sys: "/sys"}

// resolveDevice turns storage.device into the canonical device path. UUID= and
// LABEL= use udev's /dev/disk/by-uuid|by-label links when present, else a scan of
// every block device with blkid(8) (Debian package util-linux), bypassing blkid's
// cache, whose entries can be stale after a failover. WWN= uses
// /dev/disk/by-id/wwn-*, else the SCSI/NVMe wwid files in sysfs.
func resolveDevice(ctx context.Context, spec string) (string, error) {
	return hostRoots.resolve(ctx, spec)
}

func (r devRoots) resolve(ctx context.Context, spec string) (string, error) {
	dev, err := spec, error(nil)
	if tag, val, ok := strings.Cut(spec, "="); ok && !strings.HasPrefix(spec, "/") {
		switch tag {
		case "UUID":
			dev, err = r.byTag(ctx, tag, "by-uuid", val)
		case "LABEL":
			dev, err = r.byTag(ctx, tag, "by-label", val)
		case "WWN":
			dev, err = r.byWWN(val)
		default:
			err = fmt.Errorf("unknown tag %q (want UUID=, LABEL= or WWN=)", tag)
		}
	}
	if err != nil {
		return "", fmt.Errorf("storage.device: %q: %w", spec, err)
	}
	real, err := filepath.EvalSymlinks(dev)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("storage.device: %q: %s does not exist: %w", spec, dev, ErrStorageNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("storage.device: %q: %w", spec, err)
	}
	return real, nil
}

func (r devRoots) byTag(ctx context.Context, tag, dir, val string) (string, error) {
	if !strings.Contains(val, "/") && val != "." && val != ".." {
		link := filepath.Join(r.dev, "disk", dir, val)
		if _, err := os.Stat(link); err == nil {
			return link, nil
		}
	}
	out, code, err := runTool(ctx, "blkid", "-c", "/dev/null", "-o", "device", "-t", tag+"="+val)
	switch {
	case err != nil:
		return "", err
	case code == 2:
		return "", fmt.Errorf("no block device has %s=%s (blkid -t): %w", tag, val, ErrStorageNotFound)
	case code != 0:
		return "", fmt.Errorf("blkid -t %s=%s: exit status %d: %s", tag, val, code, lastLines(out, 3))
	}
	return r.pick(strings.Fields(string(out)))
}

// pick chooses among devices carrying the same identity: duplicates of one device
// node collapse; several distinct ones are ambiguous unless exactly one is a
// device-mapper device (multipath on top of its paths), which wins.
func (r devRoots) pick(devs []string) (string, error) {
	seen := make(map[uint64]bool)
	var uniq, dm []string
	for _, d := range devs {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil || seen[st.Rdev] {
			continue
		}
		seen[st.Rdev] = true
		uniq = append(uniq, d)
		sysDM := filepath.Join(r.sys, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), "dm")
		if _, err := os.Stat(sysDM); err == nil {
			dm = append(dm, d)
		}
	}
	switch {
	case len(uniq) == 1:
		return uniq[0], nil
	case len(uniq) == 0:
		return "", ErrStorageNotFound
	case len(dm) == 1:
		return dm[0], nil
	}
	return "", fmt.Errorf("%w: %s", ErrStorageAmbiguous, strings.Join(uniq, ", "))
}

// normWWN makes "0x600A0B80...", "naa.600a0b80..." and "600a0b80..." comparable.
func normWWN(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, p := range []string{"0x", "naa.", "eui."} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

func (r devRoots) byWWN(val string) (string, error) {
	n := normWWN(val)
	for _, name := range []string{"wwn-0x" + n, "wwn-" + val} {
		link := filepath.Join(r.dev, "disk", "by-id", name)
		if _, err := os.Stat(link); err == nil && !strings.Contains(val, "/") {
			return link, nil
		}
	}
	files, _ := filepath.Glob(filepath.Join(r.sys, "block", "*", "device", "wwid")) // SCSI
	nvme, _ := filepath.Glob(filepath.Join(r.sys, "block", "*", "wwid"))
	var names []string
	holders := make(map[string]int)
	for _, f := range append(files, nvme...) {
		b, err := os.ReadFile(f)
		if err != nil || normWWN(string(b)) != n {
			continue
		}
		name := strings.TrimPrefix(f, filepath.Join(r.sys, "block")+"/")
		name, _, _ = strings.Cut(name, "/")
		names = append(names, name)
		hs, _ := os.ReadDir(filepath.Join(r.sys, "block", name, "holders"))
		for _, h := range hs {
			holders[h.Name()]++
		}
	}
	switch {
	case len(names) == 0:
		return "", fmt.Errorf("no disk has WWN %s (/dev/disk/by-id, sysfs wwid): %w", val, ErrStorageNotFound)
	case len(names) == 1:
		return filepath.Join(r.dev, names[0]), nil
	}
	for h, c := range holders { // every path of the LU under one multipath device
		if c == len(names) && len(holders) == 1 {
			return filepath.Join(r.dev, h), nil
		}
	}
	return "", fmt.Errorf("%w: WWN %s is on %s and no single multipath device holds them", ErrStorageAmbiguous, val, strings.Join(names, ", "))
}

// probeFSType returns the TYPE of dev's signature from a low-level, read-only
// probe ("" when there is none). It never uses blkid's cache.
func probeFSType(ctx context.Context, dev string) (string, error) {
	out, code, err := runTool(ctx, "blkid", "-p", "-o", "export", dev)
	switch {
	case err != nil:
		return "", err
	case code == 2:
		return "", nil
	case code != 0:
		return "", fmt.Errorf("blkid -p %s: exit status %d: %s", dev, code, lastLines(out, 3))
	}
	return parseBlkidExport(out)["TYPE"], nil
}

// lookPathSbin is exec.LookPath that also tries /usr/sbin and /sbin, which are not
// in every agent's PATH.
func lookPathSbin(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, err2 := exec.LookPath(filepath.Join(dir, name)); err2 == nil {
			return p, nil
		}
	}
	return "", err
}

// runTool runs a system tool in its own process group with LC_ALL=C (so its
// messages can be matched) and returns its combined output (the last 64 KiB) and
// exit status (-1 when killed by a signal). When ctx ends, the group gets SIGTERM,
// then SIGKILL after toolKillGrace, and err wraps ctx.Err().
func runTool(ctx context.Context, argv ...string) ([]byte, int, error) {
	path, err := lookPathSbin(argv[0])
	if err != nil {
		return nil, 0, fmt.Errorf("%s is not installed: %w", argv[0], err)
	}
	out := &tailBuffer{max: 64 << 10}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGTERM) }
	cmd.WaitDelay = toolKillGrace // then Wait SIGKILLs the leader
	err = cmd.Run()
	if ctx.Err() != nil && cmd.Process != nil {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL) // what is left of the group; ESRCH if none
		return out.Bytes(), -1, fmt.Errorf("%s: %w", argv[0], ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return out.Bytes(), exitErr.ExitCode(), nil
	}
	if err != nil {
		return out.Bytes(), 0, fmt.Errorf("%s: %w", argv[0], err)
	}
	return out.Bytes(), 0, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte { return t.buf.Bytes() }

// mountOptions is storage.options split into mount(2) flags and the data string.
type mountOptions struct {
	flags uintptr
	data  string
}

// mountFlags maps the flag options of mount(8) to MS_* bits: set or clear.
var mountFlags = map[string]struct {
	bit uintptr
	set bool
}{
	"ro": {unix.MS_RDONLY, true}, "rw": {unix.MS_RDONLY, false},
	"nosuid": {unix.MS_NOSUID, true}, "suid": {unix.MS_NOSUID, false},
	"nodev": {unix.MS_NODEV, true}, "dev": {unix.MS_NODEV, false},
	"noexec": {unix.MS_NOEXEC, true}, "exec": {unix.MS_NOEXEC, false},
	"sync": {unix.MS_SYNCHRONOUS, true}, "async": {unix.MS_SYNCHRONOUS, false},
	"dirsync": {unix.MS_DIRSYNC, true},
	"noatime": {unix.MS_NOATIME, true}, "atime": {unix.MS_NOATIME, false},
	"nodiratime": {unix.MS_NODIRATIME, true}, "diratime": {unix.MS_NODIRATIME, false},
	"relatime": {unix.MS_RELATIME, true}, "norelatime": {unix.MS_RELATIME, false},
	"strictatime": {unix.MS_STRICTATIME, true}, "nostrictatime": {unix.MS_STRICTATIME, false},
	"lazytime": {unix.MS_LAZYTIME, true}, "nolazytime": {unix.MS_LAZYTIME, false},
	"silent": {unix.MS_SILENT, true}, "loud": {unix.MS_SILENT, false},
}

// fstabOnly are options that mean something to mount(8) or systemd, not the kernel.
var fstabOnly = map[string]bool{"defaults": true, "auto": true, "noauto": true, "nofail": true,
	"_netdev": true, "user": true, "nouser": true, "users": true, "owner": true, "group": true}

// parseMountOptions splits storage.options ("noatime,nodev,errors=remount-ro") into
// flags and the file-system-specific data string; later options win ("ro,rw" = rw).
func parseMountOptions(s string) (mountOptions, error) {
	var o mountOptions
	var data []string
	for opt := range strings.SplitSeq(s, ",") {
		name, _, _ := strings.Cut(opt, "=")
		switch f, isFlag := mountFlags[opt]; {
		case opt == "" || fstabOnly[opt] || strings.HasPrefix(opt, "x-") || name == "comment":
		case strings.ContainsAny(opt, " \t\n\x00"):
			return mountOptions{}, fmt.Errorf("storage.options: %q: contains white space", opt)
		case isFlag && f.set:
			o.flags |= f.bit
		case isFlag:
			o.flags &^= f.bit
		case strings.Contains(name, "bind") || strings.HasSuffix(name, "shared") || strings.HasSuffix(name, "slave") ||
			strings.HasSuffix(name, "private") || strings.HasSuffix(name, "unbindable") ||
			name == "remount" || name == "move" || name == "loop":
			return mountOptions{}, fmt.Errorf("storage.options: %q: not allowed (the role's file system is a plain mount of its device)", opt)
		default:
			data = append(data, opt)
		}
	}
	o.data = strings.Join(data, ",")
	if len(o.data) >= os.Getpagesize() {
		return mountOptions{}, fmt.Errorf("storage.options: file system options are %d bytes, the kernel takes less than %d", len(o.data), os.Getpagesize())
	}
	return o, nil
}

// mount mounts dev on mp, with a hint for the usual errors.
func mount(dev, mp, fstype string, o mountOptions) error {
	err := unix.Mount(dev, mp, fstype, o.flags, o.data)
	hints := map[unix.Errno]string{
		unix.ENODEV:  "file system type not supported by the kernel",
		unix.EINVAL:  "bad superblock or unknown option; see the kernel log",
		unix.EBUSY:   "device or mountpoint in use",
		unix.EROFS:   "device is read-only; use the ro option",
		unix.ENOTBLK: "not a block device",
		unix.EACCES:  "device is write-protected or access denied",
	}
	var errno unix.Errno
	if errors.As(err, &errno) && hints[errno] != "" {
		return fmt.Errorf("%w (%s)", err, hints[errno])
	}
	return err
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	id           int
	major, minor uint32
	mountpoint   string
	fstype       string
	source       string
}

func readMountinfo() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("takeover: storage: %w", err)
	}
	return parseMountinfo(b)
}

// parseMountinfo parses proc(5) mountinfo: "36 35 98:0 /mnt1 /mnt2 rw,noatime
// master:1 - ext3 /dev/root rw,errors=continue", optional fields up to "-".
func parseMountinfo(b []byte) ([]mountEntry, error) {
	var ms []mountEntry
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("takeover: storage: malformed mountinfo line %q", strings.TrimSpace(line))
		}
		id, err1 := strconv.Atoi(f[0])
		maj, minor, _ := strings.Cut(f[2], ":")
		ma, err2 := strconv.ParseUint(maj, 10, 32)
		mi, err3 := strconv.ParseUint(minor, 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("takeover: storage: malformed mountinfo line %q: %w", strings.TrimSpace(line), err)
		}
		ms = append(ms, mountEntry{id: id, major: uint32(ma), minor: uint32(mi),
			mountpoint: unescapeOctal(f[4]), fstype: f[sep+1], source: unescapeOctal(f[sep+2])})
	}
	return ms, nil
}

// unescapeOctal undoes the kernel's \ooo escaping of space, tab, newline and \.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// mountsUnder returns the mounts at or under mp, most recent (innermost, topmost)
// first: the order they can be unmounted in.
func mountsUnder(ms []mountEntry, mp string) []mountEntry {
	var out []mountEntry
	for i := len(ms) - 1; i >= 0; i-- {
		if under(ms[i].mountpoint, mp) {
			out = append(out, ms[i])
		}
	}
	return out
}

func devNumber(dev string) (uint32, uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return 0, 0, err
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev), nil
}

// refuseMounted fails when mp already has a mount or dev is mounted anywhere: Start
// never adopts a mount it did not make (after a fence its caches may be stale).
func refuseMounted(dev, mp string) error {
	ms, err := readMountinfo()
	if err != nil {
		return err
	}
	ma, mi, err := devNumber(dev)
	if err != nil {
		return fmt.Errorf("takeover: storage %s: %w", dev, err)
	}
	for _, m := range ms {
		switch {
		case m.mountpoint == mp:
			return fmt.Errorf("%w: %s already has %s (%s) mounted; stop the role or clean up first", ErrStorageMounted, mp, m.source, m.fstype)
		case m.major == ma && m.minor == mi:
			return fmt.Errorf("%w: device %s is already mounted at %s", ErrStorageMounted, dev, m.mountpoint)
		}
	}
	return nil
}

// verifyMounted checks that the topmost mount at mp is dev with fstype.
func verifyMounted(dev, mp, fstype string) error {
	ms, err := readMountinfo()
	if err != nil {
		return err
	}
	ma, mi, err := devNumber(dev)
	if err != nil {
		return err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		if m.mountpoint != mp {
			continue
		}
		if m.fstype != fstype || (m.source != dev && (m.major != ma || m.minor != mi)) {
			return fmt.Errorf("mountinfo shows %s (%s, %d:%d) at %s, want %s (%s, %d:%d)",
				m.source, m.fstype, m.major, m.minor, mp, dev, fstype, ma, mi)
		}
		return nil
	}
	return fmt.Errorf("%s is not in /proc/self/mountinfo after mount", mp)
}

// unmountPoll is how often a busy unmount is retried: no event says when the
// holders have let go, so Stop polls, bounded by its ctx.
const unmountPoll = 100 * time.Millisecond

// unmountAll unmounts everything at or under mp. On EBUSY it signals the holders
// (SIGTERM at once, SIGKILL from min(termGrace, half the budget)), retrying every
// unmountPoll; shortly before ctx's deadline (or once ctx is done) it detaches
// lazily and returns ErrStorageLazyUnmount. No deadline means defaultUnmountTimeout.
func unmountAll(ctx context.Context, mp string, termGrace time.Duration, log *zap.Logger) error {
	t0 := time.Now()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = t0.Add(defaultUnmountTimeout)
	}
	budget := deadline.Sub(t0)
	killAt := t0.Add(min(termGrace, budget/2))
	lazyAt := deadline.Add(-min(time.Second, budget/10))
	signalled := make(map[int]uint64) // pid -> start time, SIGTERM sent
	var tick *time.Ticker
	for n := 0; ; n++ {
		busy, done, err := unmountPass(mp)
		if err != nil {
			return err
		}
		if busy == nil {
			if done > 0 || n > 0 {
				log.Info("storage unmounted", zap.Duration("duration", time.Since(t0)), zap.Int("attempts", n+1))
			}
			return nil
		}
		now := time.Now()
		holders := findHolders(busy)
		if ctx.Err() != nil || !now.Before(lazyAt) {
			return lazyUnmount(mp, busy, holders, time.Since(t0), log)
		}
		sig := unix.SIGTERM
		if !now.Before(killAt) {
			sig = unix.SIGKILL
		}
		signalHolders(holders, sig, signalled, log)
		if tick == nil {
			tick = time.NewTicker(unmountPoll)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// unmountPass unmounts the mounts under mp innermost first. busy is non-nil (the
// mounts left) when one of them was busy; done counts the unmounts that worked.
func unmountPass(mp string) (busy []mountEntry, done int, err error) {
	ms, err := readMountinfo()
	if err != nil {
		return nil, 0, err
	}
	todo := mountsUnder(ms, mp)
	for i, m := range todo {
		switch err := unix.Unmount(m.mountpoint, 0); {
		case err == nil:
			done++
		case errors.Is(err, unix.EBUSY):
			return todo[i:], done, nil
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
			// gone meanwhile (or under a mount already removed)
		default:
			return nil, done, fmt.Errorf("takeover: storage unmount %s: %w", m.mountpoint, err)
		}
	}
	if done == 0 && len(todo) > 0 {
		return nil, 0, fmt.Errorf("takeover: storage unmount %s: still mounted but umount says it is not a mount point", mp)
	}
	if len(todo) > 0 {
		return unmountPass(mp) // confirm; bounded by the stack depth
	}
	return nil, done, nil
}

// lazyUnmount detaches the busy mounts (MNT_DETACH), innermost first; detaching
// one also detaches what is under it, hence EINVAL for those is fine.
func lazyUnmount(mp string, busy []mountEntry, holders []holder, waited time.Duration, log *zap.Logger) error {
	log.Error("storage: file system still busy at the stop deadline; ESCALATING to a lazy unmount (MNT_DETACH): "+
		"it disappears from the namespace but stays in use until its holders exit, so this node must be fenced before another mounts it",
		zap.Duration("waited", waited), zap.Stringers("holders", holders))
	for _, m := range busy {
		if err := unix.Unmount(m.mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("takeover: storage lazy unmount %s: %w", m.mountpoint, err)
		}
	}
	return fmt.Errorf("%w: %s was busy for %s (holders: %v)", ErrStorageLazyUnmount, mp, waited.Round(time.Millisecond), holders)
}

// holder is a process that keeps a mount busy.
type holder struct {
	pid   int
	start uint64 // start time in clock ticks, guards against pid reuse
	comm  string
	why   string // "cwd /srv/db", "fd /srv/db/x.log", "maps /srv/db/lib.so"
}

func (h holder) String() string { return fmt.Sprintf("%d(%s) %s", h.pid, h.comm, h.why) }

// findHolders scans /proc for processes with a cwd, root or open file under one of
// ms' mountpoints, or a mapping of a file on one of their devices. The agent itself
// is never a holder (it must not kill itself); a process in another mount namespace
// may be missed, and then Stop ends with the lazy unmount.
func findHolders(ms []mountEntry) []holder {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var hs []holder
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if why := holds(pid, ms); why != "" {
			if start, comm, ok := procStat(pid); ok {
				hs = append(hs, holder{pid: pid, start: start, comm: comm, why: why})
			}
		}
	}
	return hs
}

func holds(pid int, ms []mountEntry) string {
	base := "/proc/" + strconv.Itoa(pid)
	inMount := func(p string) bool {
		for _, m := range ms {
			if under(p, m.mountpoint) {
				return true
			}
		}
		return false
	}
	for _, l := range []string{"cwd", "root"} {
		if p, err := os.Readlink(base + "/" + l); err == nil && inMount(p) {
			return l + " " + p
		}
	}
	fds, _ := os.ReadDir(base + "/fd")
	for _, fd := range fds {
		if p, err := os.Readlink(base + "/fd/" + fd.Name()); err == nil && inMount(p) {
			return "fd " + p
		}
	}
	maps, _ := os.ReadFile(base + "/maps")
	for line := range strings.Lines(string(maps)) {
		f := strings.Fields(line) // addr perms offset dev inode path
		if len(f) < 6 || f[4] == "0" {
			continue
		}
		ma, mi, _ := strings.Cut(f[3], ":")
		a, err1 := strconv.ParseUint(ma, 16, 32)
		b, err2 := strconv.ParseUint(mi, 16, 32)
		for _, m := range ms {
			if err1 == nil && err2 == nil && uint32(a) == m.major && uint32(b) == m.minor {
				return "maps " + f[5]
			}
		}
	}
	return ""
}

// procStat returns a process's start time and command name from /proc/<pid>/stat.
func procStat(pid int) (start uint64, comm string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return 0, "", false
	}
	f := strings.Fields(s[end+1:]) // f[0] is field 3 (state); starttime is field 22
	if len(f) < 20 {
		return 0, "", false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, s[open+1 : end], err == nil
}

// signalHolders sends sig to each holder through a pidfd, after checking that the
// pid still names the process that was found (same start time). SIGTERM goes to a
// process once; SIGKILL every time. pid 1 is never signalled.
func signalHolders(hs []holder, sig unix.Signal, signalled map[int]uint64, log *zap.Logger) {
	for _, h := range hs {
		if h.pid == 1 || (sig == unix.SIGTERM && signalled[h.pid] == h.start) {
			continue
		}
		pfd, err := unix.PidfdOpen(h.pid, 0)
		if err != nil {
			continue // exited
		}
		if start, _, ok := procStat(h.pid); ok && start == h.start {
			err = unix.PidfdSendSignal(pfd, sig, nil, 0)
			log.Warn("storage: signalling a process that keeps the file system busy", zap.Int("pid", h.pid),
				zap.String("comm", h.comm), zap.String("holds", h.why), zap.String("signal", unix.SignalName(sig)), zap.Error(err))
			signalled[h.pid] = h.start
		}
		_ = unix.Close(pfd)
	}
}
