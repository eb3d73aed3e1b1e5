package tgtdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Paths of the tgt binaries; tests may override them before calling Start.
var (
	TgtdPath   = "/usr/sbin/tgtd"
	TgtadmPath = "/usr/sbin/tgtadm"
)

const (
	// DefaultLUNSize is the size of each backing file unless WithLUNSize is given.
	DefaultLUNSize = 64 << 20
	// tid is the target id of the one target each tgtd serves.
	tid = 1
	// socketDir is where tgtd puts its management sockets (socket.N, socket.N.lock).
	socketDir = "/var/run/tgtd"
	// startTimeout bounds how long Start waits for the portal and control channel.
	startTimeout = 15 * time.Second
	// stopTimeout bounds how long cleanup waits for tgtd to exit before SIGKILL.
	stopTimeout = 5 * time.Second
)

var seq atomic.Int64

// Option configures Start.
type Option func(*options)

type options struct {
	luns    int
	size    int64
	iqn     string
	user    string
	secret  string
	portals int
	params  [][2]string
	netns   string // run tgtd in this network namespace (ip netns exec)
	portal  string // the first portal's address instead of a free 127.0.0.1 port
}

// WithLUNs sets the number of LUNs (1..n, default 1). LUN 0 is tgtd's controller.
func WithLUNs(n int) Option { return func(o *options) { o.luns = n } }

// WithLUNSize sets the size in bytes of every backing file (default DefaultLUNSize).
func WithLUNSize(n int64) Option { return func(o *options) { o.size = n } }

// WithIQN sets the target name (default iqn.2026-11.dev.understudy:test-<n>).
func WithIQN(iqn string) Option { return func(o *options) { o.iqn = iqn } }

// WithCHAP requires one-way CHAP with this incoming account for every login.
func WithCHAP(user, secret string) Option {
	return func(o *options) { o.user, o.secret = user, secret }
}

// WithPortals makes tgtd listen on n TCP portals on 127.0.0.1 (default 1), so
// a test can open several independent paths (I_T nexuses) to the same LUs.
func WithPortals(n int) Option { return func(o *options) { o.portals = n } }

// WithTargetParam sets an iSCSI session parameter tgtd offers for this target
// (tgtadm --op update --mode target --name NAME --value VALUE), e.g.
// ("InitialR2T", "No"), ("MaxRecvDataSegmentLength", "65536"), ("HeaderDigest", "CRC32C").
func WithTargetParam(name, value string) Option {
	return func(o *options) { o.params = append(o.params, [2]string{name, value}) }
}

// WithNetns runs tgtd inside the named network namespace (`ip netns exec NAME
// tgtd ...`), for labs whose initiators live in other namespaces. The management
// socket is a file under /var/run/tgtd, so Tgtadm still works from the caller's
// namespace. It needs WithPortal: 127.0.0.1 in that namespace is not the caller's.
func WithNetns(name string) Option { return func(o *options) { o.netns = name } }

// WithPortal makes the first (and with WithNetns only) portal listen on addr
// ("192.0.2.1:3260") instead of a free 127.0.0.1 port.
func WithPortal(addr string) Option { return func(o *options) { o.portal = addr } }

// Target is a running private tgtd serving one iSCSI target.
type Target struct {
	t       testing.TB
	ctl     int
	iqn     string
	addrs   []string
	files   []string
	dir     string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when cmd.Wait returned
	// ready: our tgtd started and owns its control socket, so kill may
	// remove the socket files (otherwise they may belong to another tgtd
	// that won the race for the same control port).
	ready bool
	stop  sync.Once
	netns string // see WithNetns
}

// Start launches tgtd, creates the target and its LUNs, and registers cleanup.
// It skips the test when tgtd is not installed (fails with UNDERSTUDY_REQUIRE_ALL=1).
func Start(t testing.TB, opts ...Option) *Target {
	t.Helper()
	o := options{luns: 1, size: DefaultLUNSize, portals: 1}
	for _, opt := range opts {
		opt(&o)
	}
	requireTools(t)
	if o.luns < 1 || o.portals < 1 || o.size < 4096 {
		t.Fatalf("tgtdtest: bad options: luns=%d (>=1), portals=%d (>=1), size=%d (>=4096)",
			o.luns, o.portals, o.size)
	}
	if o.netns != "" && (o.portal == "" || o.portals != 1) {
		t.Fatalf("tgtdtest: bad options: WithNetns(%q) needs WithPortal and one portal (portals=%d)", o.netns, o.portals)
	}
	n := seq.Add(1)
	if o.iqn == "" {
		o.iqn = fmt.Sprintf("iqn.2026-11.dev.understudy:test-%d-%d", os.Getpid(), n)
	}
	// Not t.TempDir: tgtd splits its backing-store parameters on ',', and
	// subtest names put commas and spaces into TempDir paths.
	dir, err := os.MkdirTemp("", "tgtdtest-")
	if err != nil {
		t.Fatalf("tgtdtest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	tg := &Target{t: t, iqn: o.iqn, dir: dir}
	tg.logPath = filepath.Join(tg.dir, "tgtd.log")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if lastErr = tg.launch(o); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("tgtdtest: start tgtd: %v", lastErr)
	}
	t.Cleanup(tg.Stop)
	if err := tg.configure(o); err != nil {
		t.Fatalf("tgtdtest: configure target %s: %v\n%s", o.iqn, err, tg.logTail())
	}
	return tg
}

func requireTools(t testing.TB) {
	t.Helper()
	for _, p := range []string{TgtdPath, TgtadmPath} {
		if _, err := os.Stat(p); err != nil {
			skipOrFail(t, fmt.Sprintf("tgtdtest: %s not available (install Debian package tgt): %v", p, err))
		}
	}
	if err := os.MkdirAll(socketDir, 0o755); err != nil {
		skipOrFail(t, fmt.Sprintf("tgtdtest: cannot create %s (tgtd needs root): %v", socketDir, err))
	}
}

func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// launch picks a free control port and TCP port(s) and starts tgtd, waiting
// until it is ready. On failure everything it started is stopped.
func (tg *Target) launch(o options) error {
	ctl, err := freeControlPort()
	if err != nil {
		return err
	}
	addrs := make([]string, 0, o.portals)
	if o.portal != "" {
		addrs = append(addrs, o.portal)
	}
	for len(addrs) < o.portals {
		a, err := freeTCPAddr()
		if err != nil {
			return err
		}
		addrs = append(addrs, a)
	}
	logf, err := os.OpenFile(tg.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	argv := []string{TgtdPath, "-f", "-C", strconv.Itoa(ctl), "--iscsi", "portal=" + addrs[0]}
	if o.netns != "" {
		// ip execs tgtd in place: the child is tgtd itself, with our PDEATHSIG.
		argv = append([]string{"ip", "netns", "exec", o.netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", TgtdPath, err)
	}
	tg.ctl, tg.addrs, tg.cmd, tg.done, tg.netns = ctl, addrs, cmd, make(chan struct{}), o.netns
	go func() { _ = cmd.Wait(); close(tg.done) }()
	tg.ready = false
	if err := tg.waitReady(); err != nil {
		tg.kill()
		return fmt.Errorf("%w\n%s", err, tg.logTail())
	}
	tg.ready = true
	for _, a := range addrs[1:] {
		if _, err := tg.Tgtadm("--lld", "iscsi", "--op", "new", "--mode", "portal", "--param", "portal="+a); err != nil {
			tg.kill()
			return fmt.Errorf("add portal %s: %w", a, err)
		}
	}
	return nil
}

// waitReady polls (bounded) until the control channel answers and the first
// portal accepts TCP connections.
func (tg *Target) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, ctlErr := tg.Tgtadm("--op", "show", "--mode", "system")
		var dialErr error
		if ctlErr == nil && tg.netns != "" {
			// The portal is in another namespace: tgtd creates its portals before it
			// serves its control channel, so ask it for the portal list instead.
			if dialErr = tg.hasPortal(tg.addrs[0]); dialErr == nil {
				select {
				case <-tg.done: // someone else's tgtd answered
				default:
					return nil
				}
			}
		} else if ctlErr == nil {
			var c net.Conn
			if c, dialErr = net.DialTimeout("tcp", tg.addrs[0], time.Second); dialErr == nil {
				c.Close()
				select {
				case <-tg.done: // someone else's tgtd answered
				default:
					return nil
				}
			}
		}
		select {
		case <-tg.done:
			return fmt.Errorf("tgtd exited during startup")
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tgtd not ready after %v: control: %v, portal %s: %v",
				startTimeout, ctlErr, tg.addrs[0], dialErr)
		}
	}
}

// hasPortal reports (as nil) whether tgtd lists addr among its iSCSI portals.
func (tg *Target) hasPortal(addr string) error {
	out, err := tg.Tgtadm("--lld", "iscsi", "--op", "show", "--mode", "portal")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Portal: "+addr+",") {
		return fmt.Errorf("portal %s not listed: %s", addr, strings.TrimSpace(out))
	}
	return nil
}

func (tg *Target) configure(o options) error {
	steps := [][]string{
		{"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", o.iqn},
	}
	for lun := 1; lun <= o.luns; lun++ {
		f := filepath.Join(tg.dir, fmt.Sprintf("lun%d.img", lun))
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			return err
		}
		if err := os.Truncate(f, o.size); err != nil {
			return err
		}
		tg.files = append(tg.files, f)
		steps = append(steps, []string{"--lld", "iscsi", "--op", "new", "--mode", "logicalunit",
			"--tid", "1", "--lun", strconv.Itoa(lun), "-b", f})
	}
	for _, p := range o.params {
		steps = append(steps, []string{"--lld", "iscsi", "--op", "update", "--mode", "target",
			"--tid", "1", "--name", p[0], "--value", p[1]})
	}
	if o.user != "" {
		steps = append(steps,
			[]string{"--lld", "iscsi", "--op", "new", "--mode", "account", "--user", o.user, "--password", o.secret},
			[]string{"--lld", "iscsi", "--op", "bind", "--mode", "account", "--tid", "1", "--user", o.user})
	}
	steps = append(steps, []string{"--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"})
	for _, s := range steps {
		if _, err := tg.Tgtadm(s...); err != nil {
			return err
		}
	}
	return nil
}

// Tgtadm runs tgtadm against this tgtd's control port and returns its output.
// The command is bounded by a 10s timeout.
func (tg *Target) Tgtadm(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	full := append([]string{"-C", strconv.Itoa(tg.ctl)}, args...)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, TgtadmPath, full...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("tgtadm %v: %w: %s", full, err, bytes.TrimSpace(out.Bytes()))
	}
	return out.String(), nil
}

// Addr is the first portal, "127.0.0.1:port" (or WithPortal's address).
func (tg *Target) Addr() string { return tg.addrs[0] }

// Addrs are all portals (see WithPortals).
func (tg *Target) Addrs() []string { return append([]string(nil), tg.addrs...) }

// IQN is the target name.
func (tg *Target) IQN() string { return tg.iqn }

// TID is tgtd's target id of the target (always 1).
func (tg *Target) TID() int { return tid }

// ControlPort is the tgtd -C management port.
func (tg *Target) ControlPort() int { return tg.ctl }

// URL is iscsi://<first portal>/<iqn>/<lun>.
func (tg *Target) URL(lun int) string { return tg.URLOn(0, lun) }

// URLOn is the URL of lun through portal i (see WithPortals).
func (tg *Target) URLOn(portal, lun int) string {
	return fmt.Sprintf("iscsi://%s/%s/%d", tg.addrs[portal], tg.iqn, lun)
}

// BackingFile is the path of the file backing lun (1-based).
func (tg *Target) BackingFile(lun int) string { return tg.files[lun-1] }

// LogTail returns the end of tgtd's output, for failure messages.
func (tg *Target) LogTail() string { return tg.logTail() }

func (tg *Target) logTail() string {
	b, _ := os.ReadFile(tg.logPath)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return "tgtd log:\n" + string(b)
}

// Stop shuts tgtd down (idempotent; also run by t.Cleanup). Initiators see
// their connections drop and logins refused afterwards.
func (tg *Target) Stop() {
	tg.stop.Do(func() {
		_ = tg.Resume() // a paused tgtd would not answer tgtadm
		// tgtd ignores SIGTERM; "delete system" only works without targets.
		_, _ = tg.Tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1", "--force")
		_, _ = tg.Tgtadm("--op", "delete", "--mode", "system")
		select {
		case <-tg.done:
			// tgtd 1.0.85 leaves socket.N and socket.N.lock behind even on a
			// clean exit; kill removes them (no other tgtd can have taken
			// the port: freeControlPort skips ports whose files exist).
		case <-time.After(stopTimeout):
			tg.t.Logf("tgtdtest: tgtd -C %d did not exit after %v; killing", tg.ctl, stopTimeout)
		}
		tg.kill()
	})
}

// kill SIGKILLs tgtd, waits for it, and removes its management socket files
// if they are its own and it could not remove them itself.
func (tg *Target) kill() {
	_ = tg.cmd.Process.Kill()
	<-tg.done
	if !tg.ready {
		return
	}
	for _, suffix := range []string{"", ".lock"} {
		p := filepath.Join(socketDir, fmt.Sprintf("socket.%d%s", tg.ctl, suffix))
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			tg.t.Logf("tgtdtest: remove %s: %v", p, err)
		}
	}
}

// freeControlPort picks a management port whose socket files do not exist.
// tgtd itself refuses to start when the lock is held, and launch retries.
func freeControlPort() (int, error) {
	for range 100 {
		n := 10000 + rand.IntN(22000) // tgtd rejects -C values above 32767
		_, err1 := os.Stat(filepath.Join(socketDir, fmt.Sprintf("socket.%d", n)))
		_, err2 := os.Stat(filepath.Join(socketDir, fmt.Sprintf("socket.%d.lock", n)))
		if errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist) {
			return n, nil
		}
	}
	return 0, errors.New("no free tgtd control port")
}

// freeTCPAddr returns a 127.0.0.1 port the kernel just handed out. There is a
// small window before tgtd binds it; launch retries on failure.
func freeTCPAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
