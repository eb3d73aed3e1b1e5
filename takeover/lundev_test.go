//go:build linux

package takeover

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/understudy-ha/understudy/fence"
	"github.com/understudy-ha/understudy/fence/iscsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// requireLUNTools skips (or fails, with UNDERSTUDY_REQUIRE_ALL=1) a test that needs
// root, /dev/fuse, loop devices and the ext4 tools. tgtdtest.Start checks tgtd itself.
func requireLUNTools(tb testing.TB) {
	tb.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, p := range []string{"/dev/fuse", "/dev/loop-control"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, tool := range []string{"mkfs.ext4", "e2fsck"} {
		if _, err := lookPathSbin(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		tb.Fatalf("LUN device test needs %s (UNDERSTUDY_REQUIRE_ALL=1)", strings.Join(missing, ", "))
	}
	tb.Skipf("LUN device test needs %s", strings.Join(missing, ", "))
}

func lunCtx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// lunNode is one node's own path to the LUN: its iSCSI session (its I_T nexus), the
// fence.Device over it and its key, registered with Unfence as a joining node does.
type lunNode struct {
	sess *iscsi.Session
	pr   *fence.Device
	key  fence.Key
	blk  *iscsi.Device
}

func newLUNNode(tb testing.TB, ctx context.Context, tg *tgtdtest.Target, name string, id uint32) *lunNode {
	tb.Helper()
	target, err := iscsi.ParseURL(tg.URL(1))
	if err != nil {
		tb.Fatal(err)
	}
	sess, err := iscsi.Dial(ctx, target, iscsi.Config{InitiatorName: "iqn.2026-11.dev.understudy:luntest." + name,
		ISID: iscsi.ISIDFromNodeID(id), AbortTimeout: time.Second})
	if err != nil {
		tb.Fatalf("node %s: dial %s: %v", name, tg.URL(1), err)
	}
	tb.Cleanup(func() { // own bound: the test's ctx may be over
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sess.Close(cctx)
	})
	n := &lunNode{sess: sess, pr: &fence.Device{Name: tg.URL(1), Paths: []fence.Transport{sess}}}
	if n.key, err = fence.NewKey("luntest", id); err != nil {
		tb.Fatal(err)
	}
	if err := n.pr.Unfence(ctx, n.key); err != nil {
		tb.Fatalf("node %s: unfence: %v", name, err)
	}
	if n.blk, err = sess.Device(ctx); err != nil {
		tb.Fatalf("node %s: device: %v", name, err)
	}
	return n
}

// attachTestLUN attaches n's LUN under a fresh directory; cleanup detaches it (after
// the unmounts registered later, which run first).
func attachTestLUN(tb testing.TB, ctx context.Context, n *lunNode, cfg lunConfig, log *zap.Logger) (*LUNDevice, time.Duration) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "lun")
	start := time.Now()
	l, err := attachLUN(ctx, n.blk, dir, log, cfg)
	took := time.Since(start)
	if err != nil {
		tb.Fatalf("AttachLUN: %v", err)
	}
	tb.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Detach(cctx); err != nil {
			tb.Errorf("cleanup: Detach %s: %v", l.Path(), err)
		}
	})
	return l, took
}

func runLUNTool(tb testing.TB, ctx context.Context, argv ...string) (string, int) {
	tb.Helper()
	out, code, err := runTool(ctx, argv...)
	if err != nil {
		tb.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return string(out), code
}

func mkfsLUN(tb testing.TB, ctx context.Context, dev string) {
	tb.Helper()
	// No discard (it would only punch holes nobody serves) and no lazy init, so no
	// background writer runs after the mount.
	if out, code := runLUNTool(tb, ctx, "mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", dev); code != 0 {
		tb.Fatalf("mkfs.ext4 %s: exit %d: %s", dev, code, out)
	}
}

// mountLUN mounts dev (ext4) on a fresh directory; cleanup unmounts it (lazily if busy).
func mountLUN(tb testing.TB, dev string) string {
	tb.Helper()
	mp := filepath.Join(tb.TempDir(), "mnt")
	if err := os.Mkdir(mp, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Mount(dev, mp, "ext4", 0, "errors=remount-ro"); err != nil {
		tb.Fatalf("mount %s on %s: %v", dev, mp, err)
	}
	tb.Cleanup(func() { unmountLUN(tb, mp) })
	return mp
}

func unmountLUN(tb testing.TB, mp string) {
	err := unix.Unmount(mp, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(mp, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) {
		tb.Errorf("unmount %s: %v", mp, err)
	}
}

// writeSynced writes data to path and fsyncs the file and its directory.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func randomBytes(tb testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// loopBoundUnder: loop n is bound to a file under dir (loop devices are shared with
// every other test on the machine: a free number may be someone else's a moment later).
func loopBoundUnder(n int, dir string) bool {
	backing, ok := loopBacking(n)
	return ok && under(backing, dir)
}

func loopNumber(tb testing.TB, path string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(path, "/dev/loop"))
	if err != nil {
		tb.Fatalf("device %q is not /dev/loopN", path)
	}
	return n
}

// A file written through the LUN device survives Detach and comes back through a new
// session (the same node after a restart: it registers its key again first).
func TestLUNDeviceRoundTrip(t *testing.T) {
	requireLUNTools(t)
	tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(64<<20))
	ctx := lunCtx(t, 3*time.Minute)
	log := zaptest.NewLogger(t)
	data := randomBytes(t, 3<<20+123)

	a := newLUNNode(t, ctx, tg, "a", 1)
	l, attachTook := attachTestLUN(t, ctx, a, lunConfig{ioTimeout: lunIOTimeout}, log)
	n := loopNumber(t, l.Path())
	if backing, ok := loopBacking(n); !ok || backing != l.file {
		t.Fatalf("%s backing file = %q, %v; want %s", l.Path(), backing, ok, l.file)
	}
	t.Logf("attach %s: %s (loop direct I/O: %v)", l.Path(), attachTook, loopDirectIO(n))
	mkfsLUN(t, ctx, l.Path())
	mp := mountLUN(t, l.Path())
	syncs := l.fsFile.syncs.Load()
	if err := writeSynced(filepath.Join(mp, "data"), data); err != nil {
		t.Fatalf("write+fsync through the LUN device: %v", err)
	}
	if l.fsFile.syncs.Load() == syncs {
		t.Fatal("fsync on ext4 sent no SYNCHRONIZE CACHE to the target")
	}
	unmountLUN(t, mp)
	start := time.Now()
	if err := l.Detach(ctx); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	t.Logf("detach %s: %s", l.Path(), time.Since(start))
	if err := l.Detach(ctx); err != nil {
		t.Fatalf("second Detach: %v, want nil (idempotent)", err)
	}
	if loopBoundUnder(n, l.dir) {
		t.Fatalf("%s still bound after Detach", l.Path())
	}
	if ms, _ := readMountinfo(); len(mountsUnder(ms, l.dir)) != 0 {
		t.Fatalf("%s still mounted after Detach", l.dir)
	}
	// The data is on the target's disk, not only in some cache of this node.
	if img, err := os.ReadFile(tg.BackingFile(1)); err != nil || !bytes.Contains(img, data[:64<<10]) {
		t.Fatalf("tgtd backing file %s does not hold the data written (err %v)", tg.BackingFile(1), err)
	}
	if err := a.sess.Close(ctx); err != nil {
		t.Fatalf("logout: %v", err)
	}

	again := newLUNNode(t, ctx, tg, "a", 1)
	l2, _ := attachTestLUN(t, ctx, again, lunConfig{ioTimeout: lunIOTimeout}, log)
	if out, code := runLUNTool(t, ctx, "e2fsck", "-n", "-f", l2.Path()); code != 0 {
		t.Fatalf("e2fsck -n after re-attach: exit %d: %s", code, out)
	}
	got, err := os.ReadFile(filepath.Join(mountLUN(t, l2.Path()), "data"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back through a new session: %d bytes, err %v; want the %d bytes written", len(got), err, len(data))
	}
}

// The point of the LUN device: after B fences A, the target itself rejects A's writes
// to its mounted ext4; what A synced before the fence is intact on B; A's teardown
// still completes.
func TestLUNDeviceFencedWritesFail(t *testing.T) {
	requireLUNTools(t)
	tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(64<<20))
	ctx := lunCtx(t, 3*time.Minute)
	log := zaptest.NewLogger(t)
	before := randomBytes(t, 1<<20)

	a := newLUNNode(t, ctx, tg, "a", 1)
	la, _ := attachTestLUN(t, ctx, a, lunConfig{ioTimeout: lunIOTimeout}, log.Named("a"))
	mkfsLUN(t, ctx, la.Path())
	mpA := mountLUN(t, la.Path())
	if err := writeSynced(filepath.Join(mpA, "before"), before); err != nil {
		t.Fatalf("A's write+fsync before the fence: %v", err)
	}

	b := newLUNNode(t, ctx, tg, "b", 2)
	if err := b.pr.Fence(ctx, b.key, a.key); err != nil {
		t.Fatalf("B fences A: %v", err)
	}

	// A's next write+fsync fails: EIO from the device (RESERVATION CONFLICT), or
	// EROFS once ext4 aborted its journal.
	err := writeSynced(filepath.Join(mpA, "after"), randomBytes(t, 64<<10))
	t.Logf("A's write+fsync after the fence: %v", err)
	if !errors.Is(err, unix.EIO) && !errors.Is(err, unix.EROFS) {
		t.Fatalf("A's write+fsync after the fence: %v, want EIO or EROFS", err)
	}
	// And it stays that way: ext4 refuses further changes.
	err = writeSynced(filepath.Join(mpA, "later"), []byte("x"))
	t.Logf("A's next write after the fence: %v", err)
	if err == nil {
		t.Fatal("A's second write after the fence succeeded")
	}

	// B takes over as the storage step would: fsck -p (journal replay), then mount.
	lb, _ := attachTestLUN(t, ctx, b, lunConfig{ioTimeout: lunIOTimeout}, log.Named("b"))
	out, code := runLUNTool(t, ctx, "e2fsck", "-p", lb.Path())
	t.Logf("B: e2fsck -p: exit %d %s", code, strings.TrimSpace(out))
	if code > 1 {
		t.Fatalf("B: e2fsck -p %s: exit %d: %s", lb.Path(), code, out)
	}
	mpB := mountLUN(t, lb.Path())
	if got, err := os.ReadFile(filepath.Join(mpB, "before")); err != nil || !bytes.Equal(got, before) {
		t.Fatalf("B reads A's synced file: %d bytes, err %v; want the %d bytes A synced", len(got), err, len(before))
	}
	if err := writeSynced(filepath.Join(mpB, "b"), []byte("b holds it now")); err != nil {
		t.Fatalf("B writes after the takeover: %v", err)
	}

	// A's teardown still completes.
	unmountLUN(t, mpA)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := la.Detach(dctx); err != nil {
		t.Fatalf("A: Detach after being fenced: %v", err)
	}
	t.Logf("A: detach after the fence: %s", time.Since(start))
}

// Detach while the target does not answer: bounded by ctx, never hangs; once the I/O
// has failed, a second Detach finishes the job.
func TestLUNDeviceDetachTargetPaused(t *testing.T) {
	requireLUNTools(t)
	for _, tc := range []struct {
		name     string
		inflight bool // a direct write to the loop device is stuck in the server
	}{
		{"idle", false},
		{"io in flight", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(16<<20))
			ctx := lunCtx(t, 2*time.Minute)
			a := newLUNNode(t, ctx, tg, "a", 1)
			l, _ := attachTestLUN(t, ctx, a, lunConfig{ioTimeout: 20 * time.Second}, zaptest.NewLogger(t))
			if err := tg.Pause(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tg.Resume() })
			var writeErr chan error
			if tc.inflight {
				writeErr = startStuckWrite(t, l.Path())
			}
			err := detachWithin(t, l, 2*time.Second)
			t.Logf("Detach with the target paused: %v", err)
			if tc.inflight {
				if err == nil {
					t.Fatal("Detach succeeded while the loop device was still open")
				}
				// The expired Detach cancelled the stuck command: the writer gets EIO.
				if werr := <-writeErr; !errors.Is(werr, unix.EIO) {
					t.Fatalf("stuck write: %v, want EIO", werr)
				}
				err = detachWithin(t, l, 10*time.Second)
			}
			if err != nil {
				t.Fatalf("Detach: %v", err)
			}
		})
	}
}

// When the FUSE file stays open after the loop device let go of it, Detach waits until
// ctx ends, then aborts the connection (MNT_FORCE) and detaches the mount lazily: the
// server stops although the file is still open, and the opener gets errors.
func TestLUNDeviceDetachFUSEBusy(t *testing.T) {
	requireLUNTools(t)
	tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(16<<20))
	ctx := lunCtx(t, time.Minute)
	a := newLUNNode(t, ctx, tg, "a", 1)
	l, _ := attachTestLUN(t, ctx, a, lunConfig{ioTimeout: lunIOTimeout}, zaptest.NewLogger(t))
	held, err := os.Open(l.file)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := detachWithin(t, l, time.Second); err != nil {
		t.Fatalf("Detach with the FUSE file held open: %v", err)
	}
	select {
	case <-l.served:
	default:
		t.Fatal("Detach returned but the FUSE server still runs")
	}
	_, err = held.ReadAt(make([]byte, 512), 0)
	t.Logf("read through the held file after the forced unmount: %v", err)
	if err == nil {
		t.Fatal("read through an aborted FUSE connection succeeded")
	}
}

// startStuckWrite writes one block to dev with O_DIRECT in a goroutine, closing dev
// when the write returns, and waits until the request is stuck in the server.
func startStuckWrite(t *testing.T, dev string) chan error {
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, "stuck")
	done, exited := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(exited)
		_, err := f.WriteAt(buf, 0)
		done <- errors.Join(err, f.Close())
	}()
	t.Cleanup(func() { <-exited; _ = unix.Munmap(buf) }) // bounded: the command times out
	select {
	case err := <-done:
		t.Fatalf("write to %s returned while the target is paused: %v", dev, err)
	case <-time.After(500 * time.Millisecond): // it is stuck (not a synchronisation: a check)
	}
	return done
}

// detachWithin runs Detach with a ctx of d and fails the test if it does not return
// long after that (a hang, not a timing assertion: the bound is d + lunDrainGrace + 10 s).
func detachWithin(t *testing.T, l *LUNDevice, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res := make(chan error, 1)
	start := time.Now()
	go func() { res <- l.Detach(ctx) }()
	select {
	case err := <-res:
		t.Logf("Detach(ctx %s) returned after %s", d, time.Since(start))
		return err
	case <-time.After(d + lunDrainGrace + 10*time.Second):
		t.Fatalf("Detach(ctx %s) hangs", d)
		return nil
	}
}

const lunHelperEnv = "UNDERSTUDY_LUN_HELPER"

// TestLUNDeviceHelperAgent is the agent process TestCleanupLUNDevices kills: it attaches
// a LUN and waits to be killed without any cleanup.
func TestLUNDeviceHelperAgent(t *testing.T) {
	spec := os.Getenv(lunHelperEnv) // "<url> <dir>"
	if spec == "" {
		t.Skip("helper process of TestCleanupLUNDevices")
	}
	url, dir, _ := strings.Cut(spec, " ")
	ctx := lunCtx(t, time.Minute)
	target, err := iscsi.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := iscsi.Dial(ctx, target, iscsi.Config{InitiatorName: "iqn.2026-11.dev.understudy:luntest.helper", ISID: iscsi.ISIDFromNodeID(9)})
	if err != nil {
		t.Fatal(err)
	}
	blk, err := sess.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := AttachLUN(ctx, blk, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ATTACHED", l.Path())
	<-ctx.Done() // the parent kills this process long before
}

// A crashed agent leaves a loop device bound to a FUSE file whose server is gone;
// CleanupLUNDevices detaches it and unmounts the FUSE mount.
func TestCleanupLUNDevices(t *testing.T) {
	requireLUNTools(t)
	tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(16<<20))
	ctx := lunCtx(t, 2*time.Minute)
	base := t.TempDir()
	dir := filepath.Join(base, "role1")
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLUNDeviceHelperAgent$", "-test.count=1")
	helper.Env = append(os.Environ(), lunHelperEnv+"="+tg.URL(1)+" "+dir)
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	var dev string
	for sc := bufio.NewScanner(stdout); dev == "" && sc.Scan(); {
		dev, _ = strings.CutPrefix(sc.Text(), "ATTACHED ")
	}
	if dev == "" {
		t.Fatal("helper did not attach")
	}
	n := loopNumber(t, dev)
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	if !loopBoundUnder(n, dir) {
		t.Fatalf("%s not bound after the helper's crash: nothing to clean up", dev)
	}
	t.Cleanup(func() { // if CleanupLUNDevices failed, do not leave the leftovers behind
		_ = clearLoop(n, func(n int, _ *unix.LoopInfo64) bool { return loopBoundUnder(n, dir) })
		_ = unix.Unmount(dir, unix.MNT_FORCE|unix.MNT_DETACH)
	})
	if err := CleanupLUNDevices(ctx, base, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("CleanupLUNDevices: %v", err)
	}
	if loopBoundUnder(n, dir) {
		t.Fatalf("%s still bound after CleanupLUNDevices", dev)
	}
	if ms, _ := readMountinfo(); len(mountsUnder(ms, dir)) != 0 {
		t.Fatalf("%s still mounted after CleanupLUNDevices", dir)
	}
	if err := CleanupLUNDevices(ctx, base, nil); err != nil {
		t.Fatalf("CleanupLUNDevices with nothing left: %v", err)
	}
}

// BenchmarkLUNDevice measures ext4 on a LUN device over loopback iSCSI to tgtd: 4 KiB
// random write + fdatasync latency, direct sequential write and read throughput, and
// attach+detach of the device.
func BenchmarkLUNDevice(b *testing.B) {
	requireLUNTools(b)
	tg := tgtdtest.Start(b, tgtdtest.WithLUNSize(256<<20))
	ctx := lunCtx(b, 10*time.Minute)
	n := newLUNNode(b, ctx, tg, "bench", 1)
	l, _ := attachTestLUN(b, ctx, n, lunConfig{ioTimeout: lunIOTimeout}, nil)
	mkfsLUN(b, ctx, l.Path())
	mp := mountLUN(b, l.Path())
	const fileSize = 64 << 20
	path := filepath.Join(mp, "bench")
	if err := writeSynced(path, make([]byte, fileSize)); err != nil {
		b.Fatal(err)
	}
	b.Run("randwrite-4KiB-fdatasync", func(b *testing.B) { benchRandWrite(b, path, fileSize) })
	b.Run("seqwrite-1MiB-direct", func(b *testing.B) { benchSeq(b, path, fileSize, true) })
	b.Run("seqread-1MiB-direct", func(b *testing.B) { benchSeq(b, path, fileSize, false) })
	b.Run("attach-detach", func(b *testing.B) {
		other := newLUNNode(b, ctx, tg, "bench2", 2)
		for b.Loop() {
			dir := filepath.Join(b.TempDir(), "lun")
			l, err := AttachLUN(ctx, other.blk, dir, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Detach(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchRandWrite(b *testing.B, path string, size int) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := randomBytes(b, 4096)
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		off := int64(uint32(i)*2654435761%uint32(size/4096)) * 4096
		start := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// benchSeq writes or reads the file in 1 MiB chunks with O_DIRECT (the page cache
// would measure memory), wrapping around; writes end with an fsync.
func benchSeq(b *testing.B, path string, size int, write bool) {
	flags := os.O_RDONLY | unix.O_DIRECT
	if write {
		flags = os.O_WRONLY | unix.O_DIRECT
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(buf)
	copy(buf, randomBytes(b, len(buf)))
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		off := int64(i%(size/len(buf))) * int64(len(buf))
		if write {
			_, err = f.WriteAt(buf, off)
		} else {
			_, err = f.ReadAt(buf, off)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if write {
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
