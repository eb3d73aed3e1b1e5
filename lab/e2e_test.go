//go:build linux

package lab_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
)

// The lab end to end, as a user runs it: the README's demo, a short benchmark, and
// lab up/status/down, each checked for what it leaves behind.

// runCLI runs the built binary with args, bounded by d, and returns its combined output.
func runCLI(t *testing.T, d time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("understudy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// leftovers lists what a lab run may leave on this machine: lab namespaces, loop
// devices and mounts under LabRoot, processes of the lab's binary. Only items that were
// not there before (before) count.
func leftovers(t *testing.T, before map[string]bool) []string {
	t.Helper()
	var out []string
	add := func(item string) {
		if !before[item] {
			out = append(out, item)
		}
	}
	if b, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "usl-") {
				add("namespace " + f[0])
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, lab.LabRoot+"/") {
				add("mount " + line)
			}
		}
	}
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, l := range loops {
		if b, err := os.ReadFile(l); err == nil && strings.Contains(string(b), lab.LabRoot+"/") {
			add("loop " + l)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.HasPrefix(string(b), binary+"\x00") {
			continue
		}
		if st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
			continue // a zombie whose parent is gone: it holds nothing (and this PID 1 may never reap it)
		}
		add("process " + strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
}

func snapshot(t *testing.T) map[string]bool {
	m := map[string]bool{}
	for _, item := range leftovers(t, nil) {
		m[item] = true
	}
	return m
}

func requireNothingLeft(t *testing.T, what string, before map[string]bool) {
	t.Helper()
	// Processes are reaped and namespaces released asynchronously: allow a moment.
	deadline := time.Now().Add(10 * time.Second)
	var left []string
	for time.Now().Before(deadline) {
		if left = leftovers(t, before); len(left) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s left behind:\n%s", what, strings.Join(left, "\n"))
}

func TestLabDemoEndToEnd(t *testing.T) {
	requireNetLab(t)
	before := snapshot(t)
	out := runCLI(t, 3*time.Minute, "demo", "--no-color")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`role-a answers from d .* after the kill`),
		regexp.MustCompile(`takeover by d: detect=\S+ fence=\S+ mark=\S+ storage=\S+ exec=\S+ vip=\S+ health=\S+`),
		regexp.MustCompile(`a is back as the standby`),
		regexp.MustCompile(`e qualification passed .*E-Standby`),
		regexp.MustCompile(`role-c moved c -> \w: answers from`),
		regexp.MustCompile(`d left the cluster and its agent exited`),
		regexp.MustCompile(`(\d+) writes acknowledged, \d+ refused or timed out while role-a moved, 0 lost`),
		regexp.MustCompile(`Story complete in`),
	} {
		if !want.MatchString(out) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`(\d+) writes acknowledged`).FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("the client's writes were not acknowledged at all")
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out)
	}
	requireNothingLeft(t, "demo", before)
}

func TestLabBenchFailoverEndToEnd(t *testing.T) {
	requireNetLab(t)
	if _, err := exec.LookPath("keepalived"); err != nil {
		if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
			t.Fatal("bench failover compares with keepalived, which is not installed (UNDERSTUDY_REQUIRE_ALL=1)")
		}
		t.Skip("keepalived not installed")
	}
	before := snapshot(t)
	out := runCLI(t, 5*time.Minute, "bench", "failover", "--trials", "3")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^client gap\s+3\s+\S+`),
		regexp.MustCompile(`(?m)^detect-to-running\s+3\s+`),
		regexp.MustCompile(`(?m)^keepalived v2 1s\s+3\s+`),
		regexp.MustCompile(`(?m)^keepalived v3 100ms\s+3\s+`),
		regexp.MustCompile(`client gap p50, understudy / keepalived v3 100ms: \d+\.\d+`),
		regexp.MustCompile(`keepalived only moves an address`),
	} {
		if !want.MatchString(out) {
			t.Errorf("bench output lacks %q\n%s", want, out)
		}
	}
	requireNothingLeft(t, "bench failover", before)
}

func TestLabUpStatusDown(t *testing.T) {
	requireNetLab(t)
	before := snapshot(t)
	const name = "e2e-test"
	t.Cleanup(func() {
		dir, _ := lab.LabDir(name)
		if _, err := os.Stat(dir); err == nil {
			_ = lab.Down(context.Background(), dir, os.Stderr)
		}
	})
	up := runCLI(t, 2*time.Minute, "lab", "up", "--name", name)
	status := runCLI(t, time.Minute, "lab", "status", name)
	for _, out := range []string{up, status} {
		for _, want := range []string{"role-a  a", "role-b  b", "role-c  c", "d     4   standby", "e     5   standby", "a (token"} {
			if !strings.Contains(out, want) {
				t.Errorf("lab output lacks %q:\n%s", want, out)
			}
		}
	}
	// A second `up` of the same lab is refused and changes nothing.
	cmd := exec.Command(binary, "lab", "up", "--name", name)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already up") {
		t.Errorf("second lab up: %v, %s; want an 'already up' error", err, out)
	}
	down := runCLI(t, time.Minute, "lab", "down", name)
	if !strings.Contains(down, "stopping the lab's owner") {
		t.Errorf("lab down did not stop the owner:\n%s", down)
	}
	requireNothingLeft(t, "lab up/down", before)
}

// TestLabDownAfterCrash: the lab's owner is killed (kill -9, no cleanup at all); lab
// down still removes everything.
func TestLabDownAfterCrash(t *testing.T) {
	requireNetLab(t)
	before := snapshot(t)
	const name = "e2e-crash"
	runCLI(t, 2*time.Minute, "lab", "up", "--name", name)
	dir, _ := lab.LabDir(name)
	f, st, err := lab.Attach(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	p, err := os.FindProcess(st.PID)
	if err == nil {
		err = p.Kill()
	}
	if err != nil {
		t.Fatalf("kill the lab's owner %d: %v", st.PID, err)
	}
	runCLI(t, time.Minute, "lab", "down", name)
	requireNothingLeft(t, "lab down after a crash", before)
}
