//go:build linux

package lab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/health"
	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/takeover"
)

// The agent's web status page (/ui) in a real browser: headless Chromium in d's
// namespace loads d's page from its control address, before and after a crashes.

const (
	browserRun  = 60 * time.Second // bounds one Chromium run
	browserWait = 90 * time.Second // bounds retrying until the page shows what is expected
	// envKeepScreenshot, when set, keeps the screenshot: a path ending in .png, or a
	// directory (created) for ui-failover.png; "1" means ui-failover.png in the system temp dir.
	envKeepScreenshot = "UNDERSTUDY_KEEP_SCREENSHOT"
)

// requireChromium returns chromium's path, or skips (fails with UNDERSTUDY_REQUIRE_ALL=1).
func requireChromium(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatal("the web status page test needs chromium, which is not installed (UNDERSTUDY_REQUIRE_ALL=1)")
	}
	t.Skip("chromium not installed")
	return ""
}

// TestUIBrowserFailover: the page served by d shows role-a held by a (and d standing
// by); after a crashes and d takes role-a over, it shows role-a held by d, a down, and
// (when the agent serves its event history) d's takeover of role-a in the timeline. A
// screenshot of the page after the failover is taken and checked to be a real picture.
func TestUIBrowserFailover(t *testing.T) {
	requireNetLab(t)
	br := &browser{bin: requireChromium(t), dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := startOfDayNetns(t, ctx)
	d, err := f.Net().Node("d")
	if err != nil {
		t.Fatal(err)
	}
	br.ns = d.NS
	url := fmt.Sprintf("http://%s/ui", net.JoinHostPort(d.Ctl, strconv.Itoa(healthPort)))

	before := br.waitPage(t, ctx, url, "role-a held by a, d standing by", func(p page) error {
		return p.expect(map[string]string{"role-a": "a"}, map[string]string{"a": "active", "d": "standby"})
	})
	t.Logf("before the crash: %s", before.summary())

	if _, err := f.Crash(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, f, "d holds role-a", func(cs takeover.ClusterStatus) bool { return lab.Holds(cs, "d", "role-a") })
	// Whether the real agent feeds the page's timeline is decided by the agent, not the
	// page: require the takeover row exactly when it does.
	_, withEvents := any((*takeover.Agent)(nil)).(health.EventSource)
	after := br.waitPage(t, ctx, url, "role-a held by d, a down", func(p page) error {
		if err := p.expect(map[string]string{"role-a": "d"}, map[string]string{"a": "down", "d": "active"}); err != nil {
			return err
		}
		if withEvents && !p.hasEvent(takeover.EventTakeover, "role-a", "d") {
			return errors.New("no takeover of role-a by d in the timeline")
		}
		return nil
	})
	t.Logf("after the crash: %s", after.summary())
	if !withEvents {
		t.Logf("the agent does not implement health.EventSource: timeline not checked")
	}

	shot := screenshotPath(t)
	if err := br.run(ctx, "--screenshot="+shot, url); err != nil {
		t.Fatal(err)
	}
	checkScreenshot(t, shot)
	t.Logf("screenshot of the page after the failover: %s", shot)
}

// browser runs headless Chromium in namespace ns, each run with a fresh profile.
type browser struct {
	bin, ns, dir string
	runs         int
}

// run is output for a run whose stdout does not matter (--screenshot).
func (b *browser) run(ctx context.Context, args ...string) error {
	_, err := b.output(ctx, args...)
	return err
}

// output runs Chromium once with args after the common flags, bounded by browserRun,
// and returns its stdout. On timeout its whole process group is killed, and after any
// run whatever is left of the group too.
func (b *browser) output(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, browserRun)
	defer cancel()
	b.runs++
	home := filepath.Join(b.dir, fmt.Sprintf("run-%d", b.runs))
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	argv := append([]string{"netns", "exec", b.ns, b.bin,
		"--headless=new", "--no-sandbox", "--disable-gpu", // --no-sandbox: Chromium refuses root otherwise
		"--user-data-dir=" + filepath.Join(home, "profile"),
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
		"--disable-background-networking", "--disable-component-update", "--disable-breakpad",
		"--mute-audio", "--hide-scrollbars", "--window-size=1400,1000",
		"--virtual-time-budget=3000"}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	// Its own process group, so that the renderer and helper processes go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	// Everything Chromium writes (a killed one leaves its singleton socket in TMPDIR)
	// stays in the test's temp dir.
	cmd.Env = append(os.Environ(), "HOME="+home, "TMPDIR="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_CACHE_HOME="+filepath.Join(home, "cache"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ESRCH when nothing is left: fine
	}
	if err != nil {
		tail := stderr.Bytes()
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return nil, fmt.Errorf("chromium %s in %s: %w (ctx: %v)\n%s", strings.Join(args, " "), b.ns, err, ctx.Err(), tail)
	}
	return stdout.Bytes(), nil
}

// waitPage dumps the page's DOM until ok accepts it, bounded by browserWait: the agent
// serving the page sees the cluster through its own watch, a moment after the lab does.
func (b *browser) waitPage(t *testing.T, ctx context.Context, url, desc string, ok func(page) error) page {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	var last error
	var dom []byte
	for ctx.Err() == nil {
		out, err := b.output(ctx, "--dump-dom", url)
		if err != nil {
			if ctx.Err() != nil { // the wait is over, not the browser broken
				break
			}
			t.Fatal(err)
		}
		dom = out
		p := parsePage(string(dom))
		if last = ok(p); last == nil {
			return p
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	if len(dom) > 2000 {
		dom = dom[:2000]
	}
	t.Fatalf("page %s never showed %s: %v\nlast DOM (start):\n%s", url, desc, last, dom)
	return page{}
}

// page is what the status page showed: its table rows' data attributes and cell texts.
type page struct {
	roles, nodes, events []pageRow
	conn                 string
}

type pageRow struct {
	attrs map[string]string
	cells []string
}

var (
	reTable = regexp.MustCompile(`(?s)<table id="([a-z]+)">(.*?)</table>`)
	reTBody = regexp.MustCompile(`(?s)<tbody>(.*?)</tbody>`)
	reRow   = regexp.MustCompile(`(?s)<tr([^>]*)>(.*?)</tr>`)
	reAttr  = regexp.MustCompile(`data-([a-z]+)="([^"]*)"`)
	reCell  = regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`)
	reTag   = regexp.MustCompile(`<[^>]*>`)
	reConn  = regexp.MustCompile(`(?s)<p id="conn"[^>]*>(.*?)</p>`)
)

func parsePage(dom string) page {
	var p page
	for _, tm := range reTable.FindAllStringSubmatch(dom, -1) {
		body := reTBody.FindStringSubmatch(tm[2])
		if body == nil {
			continue
		}
		var rows []pageRow
		for _, rm := range reRow.FindAllStringSubmatch(body[1], -1) {
			r := pageRow{attrs: map[string]string{}}
			for _, am := range reAttr.FindAllStringSubmatch(rm[1], -1) {
				r.attrs[am[1]] = am[2]
			}
			for _, cm := range reCell.FindAllStringSubmatch(rm[2], -1) {
				r.cells = append(r.cells, strings.TrimSpace(reTag.ReplaceAllString(cm[1], " ")))
			}
			rows = append(rows, r)
		}
		switch tm[1] {
		case "roles":
			p.roles = rows
		case "nodes":
			p.nodes = rows
		case "events":
			p.events = rows
		}
	}
	if m := reConn.FindStringSubmatch(dom); m != nil {
		p.conn = m[1]
	}
	return p
}

// expect checks the role table's holders (data-holder and the holder cell's text) and
// the node table's states.
func (p page) expect(holders, states map[string]string) error {
	if p.conn == "" {
		return errors.New("no status page in the DOM (is /ui served?)")
	}
	if !strings.HasPrefix(p.conn, "live") {
		return fmt.Errorf("page not live: %q", p.conn)
	}
	for role, want := range holders {
		r, ok := find(p.roles, "role", role)
		switch {
		case !ok:
			return fmt.Errorf("no row for %s in the role table (%d rows)", role, len(p.roles))
		case r.attrs["holder"] != want || len(r.cells) < 2 || r.cells[1] != want:
			return fmt.Errorf("role %s: data-holder %q, cells %q; want holder %s", role, r.attrs["holder"], r.cells, want)
		}
	}
	for node, want := range states {
		r, ok := find(p.nodes, "node", node)
		switch {
		case !ok:
			return fmt.Errorf("no row for node %s in the node table (%d rows)", node, len(p.nodes))
		case r.attrs["state"] != want:
			return fmt.Errorf("node %s: state %q, want %s (cells %q)", node, r.attrs["state"], want, r.cells)
		}
	}
	return nil
}

func (p page) hasEvent(kind, role, node string) bool {
	for _, r := range p.events {
		if r.attrs["kind"] == kind && r.attrs["role"] == role && r.attrs["node"] == node {
			return true
		}
	}
	return false
}

func (p page) summary() string {
	var parts []string
	for _, r := range p.roles {
		parts = append(parts, r.attrs["role"]+"@"+r.attrs["holder"])
	}
	for _, r := range p.nodes {
		parts = append(parts, r.attrs["node"]+":"+r.attrs["state"])
	}
	s := strings.Join(parts, " ") + fmt.Sprintf("; %d timeline rows", len(p.events))
	if len(p.events) > 0 {
		s += fmt.Sprintf(", newest %q", p.events[0].cells)
	}
	return s
}

func find(rows []pageRow, attr, value string) (pageRow, bool) {
	for _, r := range rows {
		if r.attrs[attr] == value {
			return r, true
		}
	}
	return pageRow{}, false
}

// screenshotPath is where the screenshot goes: the test's temp dir, or what
// UNDERSTUDY_KEEP_SCREENSHOT says.
func screenshotPath(t *testing.T) string {
	t.Helper()
	keep := os.Getenv(envKeepScreenshot)
	switch {
	case keep == "":
		return filepath.Join(t.TempDir(), "ui-failover.png")
	case keep == "1":
		keep = filepath.Join(os.TempDir(), "ui-failover.png")
	case !strings.HasSuffix(keep, ".png"):
		keep = filepath.Join(keep, "ui-failover.png")
	}
	abs, err := filepath.Abs(keep)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(abs), 0o755)
	}
	if err != nil {
		t.Fatalf("%s=%s: %v", envKeepScreenshot, os.Getenv(envKeepScreenshot), err)
	}
	return abs
}

// checkScreenshot: a PNG of the window's size with more than a blank page's colours.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s (%d bytes) is not a PNG: %v", path, len(b), err)
	}
	bounds := img.Bounds()
	colours := map[[4]uint32]bool{}
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 3 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(b) < 10_000 || bounds.Dx() < 800 || bounds.Dy() < 600 || len(colours) < 10 {
		t.Errorf("screenshot %s looks empty: %d bytes, %dx%d, %d colours", path, len(b), bounds.Dx(), bounds.Dy(), len(colours))
	}
}
