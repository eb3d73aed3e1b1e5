//go:build linux

package takeover

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/understudy-ha/understudy/lease"
)

// requireStorageTools skips (or fails, with UNDERSTUDY_REQUIRE_ALL=1) a test that
// needs root and the loop device / ext4 tools.
func requireStorageTools(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "blkid", "fsck", "fsck.ext4"} {
		if _, err := lookPathSbin(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatalf("storage test needs %s (UNDERSTUDY_REQUIRE_ALL=1)", strings.Join(missing, ", "))
	}
	t.Skipf("storage test needs %s", strings.Join(missing, ", "))
}

// loopFS is an ext4 file system on a loop device this test attached.
type loopFS struct {
	img, dev, label, uuid string
}

func runOut(t *testing.T, argv ...string) string {
	t.Helper()
	path, err := lookPathSbin(argv[0])
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newLoopFS makes a 64 MiB image, attaches it and runs mkfs.ext4 with a unique
// label. The loop device is detached at cleanup, after every later cleanup (the
// unmounts) ran, also when the test failed.
func newLoopFS(t *testing.T) *loopFS {
	t.Helper()
	requireStorageTools(t)
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	dev := runOut(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	label := fmt.Sprintf("us-test-%08x", rand.Uint32()) // 16 characters, ext4's maximum
	runOut(t, "mkfs.ext4", "-q", "-L", label, dev)
	uuid := parseBlkidExport([]byte(runOut(t, "blkid", "-p", "-o", "export", dev)))["UUID"]
	if uuid == "" {
		t.Fatalf("no UUID on %s", dev)
	}
	return &loopFS{img: img, dev: dev, label: label, uuid: uuid}
}

// storageMountpoint returns a path for a mountpoint (not created) and makes sure
// nothing stays mounted there after the test.
func storageMountpoint(t *testing.T) string {
	t.Helper()
	mp := filepath.Join(t.TempDir(), "srv", "mnt")
	t.Cleanup(func() {
		for i := 0; i < 10 && mountedAt(t, mp) != nil; i++ {
			t.Errorf("%s still mounted at cleanup; detaching", mp)
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	})
	return mp
}

// mountedAt returns the topmost mountinfo entry at mp, nil if none.
func mountedAt(t *testing.T, mp string) *mountEntry {
	t.Helper()
	ms, err := readMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].mountpoint == mp {
			return &ms[i]
		}
	}
	return nil
}

func newTestStorage(t *testing.T, spec lease.StorageSpec) *Storage {
	t.Helper()
	s, err := NewStorage(spec, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("NewStorage: %v", err)
	}
	return s
}

func storageCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func storageRC(t *testing.T) RoleContext {
	return RoleContext{Role: "db", Node: "n1", NodeID: 1, Token: 5, Log: zaptest.NewLogger(t)}
}

func TestStorageStartStop(t *testing.T) {
	fs := newLoopFS(t)
	tests := []struct {
		name, device, fsck string
	}{
		{"by path, preen", fs.dev, FsckPreen},
		{"by LABEL=, no fsck", "LABEL=" + fs.label, FsckNone},
		{"by UUID=, read-only check", "UUID=" + fs.uuid, FsckCheck},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp := storageMountpoint(t)
			s := newTestStorage(t, lease.StorageSpec{Device: tt.device, FSType: "ext4", Mountpoint: mp,
				Options: "noatime,nodev,errors=remount-ro", Fsck: tt.fsck})
			t0 := time.Now()
			if err := s.Start(storageCtx(t, time.Minute), storageRC(t)); err != nil {
				t.Fatalf("Start: %v", err)
			}
			t.Logf("Start (fsck %s) took %s", tt.fsck, time.Since(t0))
			m := mountedAt(t, mp)
			if m == nil || m.fstype != "ext4" || m.source != fs.dev {
				t.Fatalf("mountinfo at %s = %+v, want ext4 from %s", mp, m, fs.dev)
			}
			var st unix.Statfs_t
			if err := unix.Statfs(mp, &st); err != nil || st.Flags&unix.ST_NOATIME == 0 || st.Flags&unix.ST_NODEV == 0 {
				t.Errorf("statfs flags = %#x, %v; want noatime and nodev", st.Flags, err)
			}
			if err := os.WriteFile(filepath.Join(mp, "hello"), []byte("understudy"), 0o600); err != nil {
				t.Fatalf("write on the mounted file system: %v", err)
			}
			t0 = time.Now()
			if err := s.Stop(storageCtx(t, time.Minute)); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			t.Logf("Stop took %s", time.Since(t0))
			if m := mountedAt(t, mp); m != nil {
				t.Fatalf("still mounted after Stop: %+v", m)
			}
			if err := s.Stop(storageCtx(t, time.Minute)); err != nil {
				t.Fatalf("second Stop (idempotent): %v", err)
			}
		})
	}
}

// holderProc starts argv with dir as cwd; it is killed and reaped at cleanup. The
// returned channel is closed when it exited, *exitErr then holds Wait's result.
func holderProc(t *testing.T, dir string, argv ...string) (exited <-chan struct{}, exitErr *error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var werr error
	go func() {
		werr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return done, &werr
}

func TestStorageStopKillsHolders(t *testing.T) {
	fs := newLoopFS(t)
	tests := []struct {
		name     string
		cwdInMP  bool
		argv     []string
		wantKill string
	}{
		{"sleep with cwd in the mountpoint", true, []string{"sleep", "300"}, "signal: terminated"},
		{"open file, SIGTERM ignored", false, []string{"sh", "-c", `trap "" TERM; exec 3>"$MP/held"; exec sleep 300`}, "signal: killed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp := storageMountpoint(t)
			s := newTestStorage(t, lease.StorageSpec{Device: fs.dev, FSType: "ext4", Mountpoint: mp, Fsck: FsckNone})
			s.termGrace = 500 * time.Millisecond
			if err := s.Start(storageCtx(t, time.Minute), storageRC(t)); err != nil {
				t.Fatalf("Start: %v", err)
			}
			dir := "/"
			if tt.cwdInMP {
				dir = mp
			}
			t.Setenv("MP", mp)
			exited, exitErr := holderProc(t, dir, tt.argv...)
			waitHeld(t, mp)
			t0 := time.Now()
			if err := s.Stop(storageCtx(t, 20*time.Second)); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			t.Logf("Stop with a holder took %s", time.Since(t0))
			if m := mountedAt(t, mp); m != nil {
				t.Fatalf("still mounted after Stop: %+v", m)
			}
			select {
			case <-exited:
				if err := *exitErr; err == nil || err.Error() != tt.wantKill {
					t.Errorf("holder ended with %v, want %q", err, tt.wantKill)
				}
			case <-storageCtx(t, 10*time.Second).Done():
				t.Fatal("the holder is still running")
			}
		})
	}
}

// waitHeld polls until an umount of mp would be busy (the holder is in place).
func waitHeld(t *testing.T, mp string) {
	t.Helper()
	ctx := storageCtx(t, 10*time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ms, err := readMountinfo()
		if err != nil {
			t.Fatal(err)
		}
		if len(findHolders(mountsUnder(ms, mp))) > 0 {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the holder never appeared")
		}
	}
}

func TestStorageStopLazyWhenTheAgentItselfHoldsIt(t *testing.T) {
	fs := newLoopFS(t)
	mp := storageMountpoint(t)
	s := newTestStorage(t, lease.StorageSpec{Device: fs.dev, FSType: "ext4", Mountpoint: mp, Fsck: FsckNone})
	if err := s.Start(storageCtx(t, time.Minute), storageRC(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	f, err := os.Create(filepath.Join(mp, "agent-holds-this"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = s.Stop(storageCtx(t, 1500*time.Millisecond))
	if !errors.Is(err, ErrStorageLazyUnmount) || !strings.Contains(err.Error(), "was busy for") {
		t.Fatalf("Stop = %v, want ErrStorageLazyUnmount", err)
	}
	if m := mountedAt(t, mp); m != nil {
		t.Fatalf("still in the namespace after the lazy unmount: %+v", m)
	}
	if _, err := f.Write([]byte("still usable")); err != nil {
		t.Errorf("write through the detached mount: %v", err)
	}
}

func TestStorageStartFailureLeavesNothing(t *testing.T) {
	fs := newLoopFS(t)
	tests := []struct {
		name    string
		spec    func(mp string) lease.StorageSpec
		wantIs  error
		wantErr string
	}{
		{"wrong fstype", func(mp string) lease.StorageSpec {
			return lease.StorageSpec{Device: fs.dev, FSType: "xfs", Mountpoint: mp, Fsck: FsckPreen}
		}, ErrStorageFSType, "has ext4, spec wants xfs"},
		{"option the kernel refuses", func(mp string) lease.StorageSpec {
			return lease.StorageSpec{Device: "LABEL=" + fs.label, FSType: "ext4", Mountpoint: mp, Options: "nosuchoption=1", Fsck: FsckNone}
		}, unix.EINVAL, "invalid argument (bad superblock or unknown option"},
		{"missing label", func(mp string) lease.StorageSpec {
			return lease.StorageSpec{Device: "LABEL=us-none-" + fs.label[8:], FSType: "ext4", Mountpoint: mp}
		}, ErrStorageNotFound, "no block device has LABEL=us-none-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp := storageMountpoint(t)
			s := newTestStorage(t, tt.spec(mp))
			err := s.Start(storageCtx(t, time.Minute), storageRC(t))
			if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Start = %v, want %v containing %q", err, tt.wantIs, tt.wantErr)
			}
			if m := mountedAt(t, mp); m != nil {
				t.Fatalf("a failed Start left a mount: %+v", m)
			}
			if _, err := os.Stat(filepath.Dir(mp)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed Start left the directories it created (%s: %v)", filepath.Dir(mp), err)
			}
		})
	}
}

func TestStorageStartRefusesMountedDevice(t *testing.T) {
	fs := newLoopFS(t)
	mp1, mp2 := storageMountpoint(t), storageMountpoint(t)
	s1 := newTestStorage(t, lease.StorageSpec{Device: fs.dev, FSType: "ext4", Mountpoint: mp1, Fsck: FsckNone})
	s2 := newTestStorage(t, lease.StorageSpec{Device: "UUID=" + fs.uuid, FSType: "ext4", Mountpoint: mp2, Fsck: FsckNone})
	ctx := storageCtx(t, time.Minute)
	if err := s1.Start(ctx, storageRC(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s1.Stop(storageCtx(t, time.Minute)) })
	if err := s2.Start(ctx, storageRC(t)); !errors.Is(err, ErrStorageMounted) || !strings.Contains(err.Error(), "already mounted at "+mp1) {
		t.Fatalf("second Start = %v, want ErrStorageMounted naming %s", err, mp1)
	}
	if err := s1.Start(ctx, storageRC(t)); !errors.Is(err, ErrStorageMounted) {
		t.Fatalf("Start on a mounted mountpoint = %v, want ErrStorageMounted", err)
	}
}

func TestStorageFsck(t *testing.T) {
	clean := newLoopFS(t)
	broken := newLoopFS(t)
	// A root inode that is not a directory, on a file system not marked clean (a
	// clean one is skipped by -p and -n): preen must refuse ("RUN fsck MANUALLY").
	runOut(t, "debugfs", "-w", "-R", "clri <2>", broken.dev)
	runOut(t, "debugfs", "-w", "-R", "ssv state 0", broken.dev)
	tests := []struct {
		name, dev, policy string
		wantErr           string
	}{
		{"preen clean", clean.dev, FsckPreen, ""},
		{"check clean", clean.dev, FsckCheck, ""},
		{"preen broken", broken.dev, FsckPreen, "exit status 4 (errors left uncorrected)"},
		{"check broken", broken.dev, FsckCheck, "(errors left uncorrected, operational error)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStorage(t, lease.StorageSpec{Device: tt.dev, FSType: "ext4", Mountpoint: "/srv/unused", Fsck: tt.policy})
			t0 := time.Now()
			err := s.fsck(storageCtx(t, time.Minute), tt.dev, zaptest.NewLogger(t))
			t.Logf("fsck %s took %s", tt.policy, time.Since(t0))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("fsck: %v", err)
			case tt.wantErr != "" && (!errors.Is(err, ErrStorageFsck) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("fsck = %v, want ErrStorageFsck containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStorageCheck(t *testing.T) {
	fs := newLoopFS(t)
	blank := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(blank, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := fmt.Sprintf("/dev/us-missing-%08x", rand.Uint32())
	tests := []struct {
		name    string
		spec    lease.StorageSpec
		wantIs  error
		wantErr string
	}{
		{name: "good by label", spec: lease.StorageSpec{Device: "LABEL=" + fs.label, FSType: "ext4"}},
		{name: "image file", spec: lease.StorageSpec{Device: fs.img, FSType: "ext4"}},
		{name: "missing device", spec: lease.StorageSpec{Device: missing, FSType: "ext4"},
			wantIs: ErrStorageNotFound, wantErr: fmt.Sprintf("storage.device: %q: %s does not exist", missing, missing)},
		{name: "missing UUID", spec: lease.StorageSpec{Device: "UUID=00000000-0000-4000-8000-000000000000", FSType: "ext4"},
			wantIs: ErrStorageNotFound, wantErr: `storage.device: "UUID=00000000-0000-4000-8000-000000000000": no block device has UUID=`},
		{name: "wrong fs type", spec: lease.StorageSpec{Device: fs.dev, FSType: "xfs"}, wantIs: ErrStorageFSType,
			wantErr: fmt.Sprintf("storage.fstype: %s (storage.device %q) has ext4, spec wants xfs", fs.dev, fs.dev)},
		{name: "no signature", spec: lease.StorageSpec{Device: blank, FSType: "ext4"}, wantIs: ErrStorageFSType,
			wantErr: "has no file system signature, spec wants ext4"},
		{name: "character device", spec: lease.StorageSpec{Device: "/dev/null", FSType: "ext4"},
			wantErr: `storage.device: "/dev/null": /dev/null is not a block device`},
		{name: "mountpoint is a file", spec: lease.StorageSpec{Device: fs.dev, FSType: "ext4", Mountpoint: notDir},
			wantErr: fmt.Sprintf("storage.mountpoint: %q: exists and is not a directory", notDir)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spec.Mountpoint == "" {
				tt.spec.Mountpoint = filepath.Join(t.TempDir(), "never-mounted")
			}
			s := newTestStorage(t, tt.spec)
			err := s.Check(storageCtx(t, time.Minute))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Check = %v, want it to contain %q", err, tt.wantErr)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Fatalf("Check = %v, want errors.Is %v", err, tt.wantIs)
			}
			if m := mountedAt(t, tt.spec.Mountpoint); m != nil {
				t.Fatalf("Check mounted something: %+v", m)
			}
			if _, err := os.Stat(tt.spec.Mountpoint); tt.spec.Mountpoint != notDir && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Check created the mountpoint (%v)", err)
			}
		})
	}
}

func TestStorageCleanupMounts(t *testing.T) {
	fs := newLoopFS(t)
	mp := storageMountpoint(t)
	s := newTestStorage(t, lease.StorageSpec{Device: fs.dev, FSType: "ext4", Mountpoint: mp, Fsck: FsckNone})
	if err := s.Start(storageCtx(t, time.Minute), storageRC(t)); err != nil {
		t.Fatal(err)
	}
	// A crash leftover: nothing in this process remembers the mount.
	err := CleanupMounts(storageCtx(t, time.Minute), []string{mp, "/nonexistent/us-never-mounted"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("CleanupMounts: %v", err)
	}
	if m := mountedAt(t, mp); m != nil {
		t.Fatalf("still mounted: %+v", m)
	}
	if err := CleanupMounts(storageCtx(t, time.Minute), []string{"relative/path", "/"}, nil); err == nil ||
		!strings.Contains(err.Error(), `"relative/path": want a clean absolute path`) || !strings.Contains(err.Error(), `"/"`) {
		t.Fatalf("CleanupMounts(bad paths) = %v", err)
	}
}

// BenchmarkStorageStartStop measures the storage step on a loop device: fsck -p of
// a clean ext4, Start without fsck (resolve, blkid probe, mount(2), verify) and
// Stop (umount(2)).
func BenchmarkStorageStartStop(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dev := newLoopFSB(b)
	mp := filepath.Join(b.TempDir(), "mnt")
	s, err := NewStorage(lease.StorageSpec{Device: dev, FSType: "ext4", Mountpoint: mp, Fsck: FsckNone}, nil)
	if err != nil {
		b.Fatal(err)
	}
	preen, err := NewStorage(lease.StorageSpec{Device: dev, FSType: "ext4", Mountpoint: mp, Fsck: FsckPreen}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var fsckT, startT, stopT time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := preen.fsck(ctx, dev, preen.log); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := s.Start(ctx, RoleContext{}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := s.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		fsckT, startT, stopT = fsckT+t1.Sub(t0), startT+t2.Sub(t1), stopT+time.Since(t2)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(fsckT), "fsck-ms/op")
	b.ReportMetric(ms(startT), "mount-ms/op")
	b.ReportMetric(ms(stopT), "unmount-ms/op")
}

// newLoopFSB is newLoopFS for benchmarks: the device path of a fresh ext4.
func newLoopFSB(b *testing.B) string {
	img := filepath.Join(b.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		b.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	b.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	if out, err := exec.Command("mkfs.ext4", "-q", dev).CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return dev
}

func TestNewStorageValidation(t *testing.T) {
	ok := lease.StorageSpec{Device: "/dev/sdb1", FSType: "ext4", Mountpoint: "/srv/db"}
	tests := []struct {
		name    string
		edit    func(s *lease.StorageSpec)
		wantErr string
	}{
		{name: "ok, fsck defaults to preen", edit: func(*lease.StorageSpec) {}},
		{name: "iscsi url", edit: func(s *lease.StorageSpec) { s.Device = "iscsi://127.0.0.1/iqn.x/0" }, wantErr: "iscsi:// devices are not supported"},
		{name: "bad tag", edit: func(s *lease.StorageSpec) { s.Device = "PARTUUID=1" }, wantErr: `storage.device: "PARTUUID=1": want a /dev path, UUID=, LABEL= or WWN=`},
		{name: "empty label", edit: func(s *lease.StorageSpec) { s.Device = "LABEL=" }, wantErr: "storage.device"},
		{name: "fstype", edit: func(s *lease.StorageSpec) { s.FSType = "" }, wantErr: `storage.fstype: "": want a file system type`},
		{name: "mountpoint /", edit: func(s *lease.StorageSpec) { s.Mountpoint = "/" }, wantErr: `storage.mountpoint: "/": want a clean absolute path other than /`},
		{name: "mountpoint relative", edit: func(s *lease.StorageSpec) { s.Mountpoint = "srv/db" }, wantErr: "storage.mountpoint"},
		{name: "mountpoint unclean", edit: func(s *lease.StorageSpec) { s.Mountpoint = "/srv/../db" }, wantErr: "storage.mountpoint"},
		{name: "fsck", edit: func(s *lease.StorageSpec) { s.Fsck = "force" }, wantErr: `storage.fsck: "force": want none, preen or check`},
		{name: "bind option", edit: func(s *lease.StorageSpec) { s.Options = "noatime,bind" }, wantErr: `storage.options: "bind": not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := ok
			tt.edit(&spec)
			s, err := NewStorage(spec, nil)
			switch {
			case tt.wantErr == "" && (err != nil || s.spec.Fsck != FsckPreen):
				t.Fatalf("NewStorage = %v, fsck %q", err, s.spec.Fsck)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("NewStorage error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestStorageParseMountOptions(t *testing.T) {
	tests := []struct {
		name, in  string
		wantFlags uintptr
		wantData  string
		wantErr   string
	}{
		{name: "empty", in: ""},
		{name: "flags", in: "ro,noatime,nodev,nosuid,noexec,sync",
			wantFlags: unix.MS_RDONLY | unix.MS_NOATIME | unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_SYNCHRONOUS},
		{name: "later wins", in: "ro,rw,nodev,dev,noatime", wantFlags: unix.MS_NOATIME},
		{name: "data passes through", in: "noatime,errors=remount-ro,data=ordered,discard",
			wantFlags: unix.MS_NOATIME, wantData: "errors=remount-ro,data=ordered,discard"},
		{name: "fstab-only dropped", in: "defaults,nofail,_netdev,x-systemd.automount,comment=x,,nouuid", wantData: "nouuid"},
		{name: "remount refused", in: "remount", wantErr: `storage.options: "remount": not allowed`},
		{name: "propagation refused", in: "rshared", wantErr: "not allowed"},
		{name: "loop refused", in: "loop", wantErr: "not allowed"},
		{name: "white space", in: "noatime, nodev", wantErr: "contains white space"},
		{name: "too long", in: "x=" + strings.Repeat("a", 5000), wantErr: "the kernel takes less than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseMountOptions(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || o.flags != tt.wantFlags || o.data != tt.wantData {
				t.Fatalf("= %#x %q %v, want %#x %q", o.flags, o.data, err, tt.wantFlags, tt.wantData)
			}
		})
	}
}

func FuzzStorageMountOptions(f *testing.F) {
	for _, s := range []string{"", "ro,noatime", "errors=remount-ro,x-a", "bind", ",,,", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseMountOptions(s)
		if err == nil && strings.ContainsAny(o.data, " \t\n\x00") {
			t.Fatalf("data %q carries white space", o.data)
		}
	})
}

const sampleMountinfo = `21 26 0:20 / /proc rw,relatime - proc proc rw
26 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw
40 26 7:3 / /srv/my\040db rw,noatime shared:9 - ext4 /dev/loop3 rw
41 40 7:4 / /srv/my\040db/logs rw - xfs /dev/loop4 rw
`

func TestStorageParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo([]byte(sampleMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := mountEntry{id: 40, major: 7, minor: 3, mountpoint: "/srv/my db", fstype: "ext4", source: "/dev/loop3"}
	if len(ms) != 4 || ms[2] != want {
		t.Fatalf("entries = %+v, want the third %+v", ms, want)
	}
	under := mountsUnder(ms, "/srv/my db")
	if len(under) != 2 || under[0].mountpoint != "/srv/my db/logs" {
		t.Errorf("mountsUnder = %+v, want logs first, then the mount itself", under)
	}
	if _, err := parseMountinfo([]byte("1 2 3:4 / /x rw no-separator ext4\n")); err == nil {
		t.Error("a line without the - separator parsed")
	}
}

func FuzzStorageMountinfo(f *testing.F) {
	f.Add([]byte(sampleMountinfo))
	f.Add([]byte("1 2 3:4 / /a\\134b rw - ext4 /dev/x rw\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := parseMountinfo(b)
		if err == nil && len(ms) > strings.Count(string(b), "\n")+1 {
			t.Fatalf("%d entries from %d lines", len(ms), strings.Count(string(b), "\n")+1)
		}
	})
}

func TestStorageFsckVerdicts(t *testing.T) {
	tests := []struct {
		name               string
		xfs                bool
		code               int
		out                string
		wantFail, wantWarn bool
	}{
		{name: "ext clean", code: 0},
		{name: "ext corrected", code: 1, wantWarn: true},
		{name: "ext reboot advised", code: 2, wantWarn: true},
		{name: "ext corrected and reboot", code: 3, wantWarn: true},
		{name: "ext uncorrected", code: 4, wantFail: true},
		{name: "ext operational error", code: 8, wantFail: true},
		{name: "ext cancelled", code: 32, wantFail: true},
		{name: "ext signal", code: -1, wantFail: true},
		{name: "xfs clean", xfs: true, code: 0},
		{name: "xfs corrupt", xfs: true, code: 1, out: "agi unlinked bucket 5 is 69 in ag 0", wantFail: true},
		{name: "xfs dirty log", xfs: true, code: 1, out: "ERROR: The filesystem has valuable metadata changes in a log which is being ignored", wantWarn: true},
		{name: "xfs exit 2", xfs: true, code: 2, wantWarn: true},
		{name: "xfs other", xfs: true, code: 4, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict, warn := fsckVerdict(tt.code)
			if tt.xfs {
				verdict, warn = xfsVerdict(tt.code, []byte(tt.out))
			}
			if (verdict != "") != tt.wantFail || (warn != "") != tt.wantWarn {
				t.Fatalf("verdict %q warn %q; want fail %v warn %v", verdict, warn, tt.wantFail, tt.wantWarn)
			}
		})
	}
}

// TestStorageResolveWWN runs the WWN lookup against fake /dev and /sys trees: the udev
// link when present, else sysfs wwid files, preferring the one multipath device
// that holds every path.
func TestStorageResolveWWN(t *testing.T) {
	const wwn = "600140512345678abcdef"
	tests := []struct {
		name    string
		disks   map[string]string // sd name -> wwid file content
		holder  string            // dm device holding every disk
		link    string            // by-id link target
		want    string
		wantErr error
	}{
		{name: "udev link", link: "sdd", want: "sdd"},
		{name: "sysfs, one path", disks: map[string]string{"sdb": "naa." + wwn + "\n", "sdc": "naa.6001405ffff\n"}, want: "sdb"},
		{name: "sysfs, multipath", disks: map[string]string{"sdb": "naa." + wwn, "sdc": "naa." + wwn}, holder: "dm-3", want: "dm-3"},
		{name: "sysfs, two paths no multipath", disks: map[string]string{"sdb": "naa." + wwn, "sdc": "naa." + wwn}, wantErr: ErrStorageAmbiguous},
		{name: "none", disks: map[string]string{"sdc": "naa.6001405ffff"}, wantErr: ErrStorageNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			r := devRoots{dev: filepath.Join(root, "dev"), sys: filepath.Join(root, "sys")}
			mk := func(p, content string) {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for name, wwid := range tt.disks {
				mk(filepath.Join(r.sys, "block", name, "device", "wwid"), wwid)
				mk(filepath.Join(r.dev, name), "")
				if tt.holder != "" {
					mk(filepath.Join(r.sys, "block", name, "holders", tt.holder), "")
				}
			}
			if tt.holder != "" {
				mk(filepath.Join(r.dev, tt.holder), "")
			}
			if tt.link != "" {
				mk(filepath.Join(r.dev, tt.link), "")
				mk(filepath.Join(r.dev, "disk", "by-id", "x"), "")
				if err := os.Symlink("../../"+tt.link, filepath.Join(r.dev, "disk", "by-id", "wwn-0x"+wwn)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := r.resolve(context.Background(), "WWN=0x"+strings.ToUpper(wwn))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), `storage.device: "WWN=0x`) {
					t.Fatalf("resolve = %q, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			want, _ := filepath.EvalSymlinks(filepath.Join(r.dev, tt.want))
			if err != nil || got != want {
				t.Fatalf("resolve = %q, %v; want %q", got, err, want)
			}
		})
	}
}
