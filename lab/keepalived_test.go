//go:build linux

package lab_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/lab"
)

// requireKeepalived skips unless root, ip and keepalived are there, or fails with
// UNDERSTUDY_REQUIRE_ALL=1.
func requireKeepalived(t testing.TB) {
	t.Helper()
	missing := ""
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case !onPath("ip"), !onPath("keepalived"):
		missing = "ip and keepalived"
	}
	if missing == "" {
		return
	}
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatalf("keepalived benchmark needs %s (UNDERSTUDY_REQUIRE_ALL=1)", missing)
	}
	t.Skipf("keepalived benchmark needs %s", missing)
}

// keepalivedNet builds a lab network with nodes a and b, deleted at cleanup.
func keepalivedNet(t testing.TB, ctx context.Context) *lab.Netns {
	t.Helper()
	requireKeepalived(t)
	n, err := lab.NewNetns(ctx, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() }) // a second Close is harmless
	return n
}

// TestBenchKeepalived runs each mode briefly; timing is not asserted (see the
// benchmark), only that the trials ran and the run left nothing behind.
func TestBenchKeepalived(t *testing.T) {
	tests := []struct {
		name    string
		version int
		advert  time.Duration
		mode    string
		trials  int
	}{
		{"v3 100ms kill", 3, 100 * time.Millisecond, lab.KeepalivedKill, 2},
		{"v3 100ms linkdown", 3, 100 * time.Millisecond, lab.KeepalivedLinkDown, 2},
		{"v3 100ms stop", 3, 100 * time.Millisecond, lab.KeepalivedStop, 2},
		{"v2 1s kill", 2, time.Second, lab.KeepalivedKill, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			n := keepalivedNet(t, ctx)
			rep, err := lab.BenchKeepalived(ctx, lab.KeepalivedOptions{Binary: binary, Net: n,
				Nodes: [2]string{"a", "b"}, AdvertInt: tc.advert, Version: tc.version, Mode: tc.mode,
				Trials: tc.trials, Dir: t.TempDir(), Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
			if err != nil {
				t.Fatalf("BenchKeepalived: %v", err)
			}
			checkKeepalivedReport(t, rep, tc.trials)
			checkNothingLeft(t, ctx, n)
		})
	}
}

func checkKeepalivedReport(t *testing.T, rep *lab.KeepalivedReport, trials int) {
	t.Helper()
	t.Logf("%s VRRPv%d advert %s: gap p50 %s max %s, ended on %s", rep.Mode, rep.Version, rep.AdvertInt,
		rep.Gap.P50, rep.Gap.Max, rep.EndedOn)
	if len(rep.Trials) != trials || rep.Gap.N != trials {
		t.Errorf("%d trials, gap stats of %d, want %d", len(rep.Trials), rep.Gap.N, trials)
	}
	for _, tr := range rep.Trials {
		t.Logf("trial %d: %s -> %s gap %s act-to-served %s failed %d", tr.Trial, tr.From, tr.To, tr.Gap, tr.ActToServed, tr.Failed)
		if tr.Gap <= 0 || tr.From == tr.To {
			t.Errorf("trial %d: %s -> %s gap %s, want a positive gap between two nodes", tr.Trial, tr.From, tr.To, tr.Gap)
		}
	}
	if rep.EndedOn != "a" && rep.EndedOn != "b" {
		t.Errorf("VIP ended on %q, want a or b", rep.EndedOn)
	}
	if !strings.Contains(rep.Caveat, "only moves an address") {
		t.Errorf("caveat %q does not say keepalived only moves an address", rep.Caveat)
	}
}

// checkNothingLeft: no process in the run's namespaces (keepalived, its VRRP child,
// demo-service), then no namespace of the run once the network is closed.
func checkNothingLeft(t *testing.T, ctx context.Context, n *lab.Netns) {
	t.Helper()
	var inodes []string
	for _, name := range []string{"a", "b"} {
		h, err := n.Node(name)
		if err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+h.NS, &st); err != nil {
			t.Fatalf("stat namespace %s: %v", h.NS, err)
		}
		inodes = append(inodes, fmt.Sprintf("net:[%d]", st.Ino))
	}
	if left := procsInNetns(inodes); len(left) > 0 {
		t.Errorf("processes left in the nodes' namespaces: %v", left)
	}
	if err := n.Close(); err != nil {
		t.Errorf("close the lab network: %v", err)
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if strings.Contains(string(out), n.Prefix()) {
		t.Errorf("namespaces of the run left:\n%s", out)
	}
}

// procsInNetns lists "pid command" of the live processes in the network namespaces
// with the given links ("net:[inode]"); a zombie has no namespace links.
func procsInNetns(inodes []string) []string {
	paths, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	var left []string
	for _, p := range paths {
		l, err := os.Readlink(p)
		if err != nil || !slices.Contains(inodes, l) {
			continue
		}
		dir := filepath.Dir(filepath.Dir(p))
		cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		left = append(left, filepath.Base(dir)+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return left
}

func TestBenchKeepalivedOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	n := keepalivedNet(t, ctx)
	ok := lab.KeepalivedOptions{Binary: binary, Net: n, Nodes: [2]string{"a", "b"}}
	tests := []struct {
		name   string
		change func(o *lab.KeepalivedOptions)
	}{
		{"no binary", func(o *lab.KeepalivedOptions) { o.Binary = "" }},
		{"no network", func(o *lab.KeepalivedOptions) { o.Net = nil }},
		{"same node twice", func(o *lab.KeepalivedOptions) { o.Nodes[1] = "a" }},
		{"unknown node", func(o *lab.KeepalivedOptions) { o.Nodes[1] = "z" }},
		{"VIP outside the lab", func(o *lab.KeepalivedOptions) { o.VIP = "10.0.0.60" }},
		{"VIP is a node's address", func(o *lab.KeepalivedOptions) { o.VIP = "192.0.2.10" }},
		{"port too large", func(o *lab.KeepalivedOptions) { o.Port = 70000 }},
		{"v2 below a second", func(o *lab.KeepalivedOptions) { o.Version, o.AdvertInt = 2, 100*time.Millisecond }},
		{"v3 not centiseconds", func(o *lab.KeepalivedOptions) { o.Version, o.AdvertInt = 3, 105*time.Millisecond }},
		{"version 4", func(o *lab.KeepalivedOptions) { o.Version = 4 }},
		{"unknown mode", func(o *lab.KeepalivedOptions) { o.Mode = "reboot" }},
		{"negative trials", func(o *lab.KeepalivedOptions) { o.Trials = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.change(&o)
			_, err := lab.BenchKeepalived(ctx, o)
			if !errors.Is(err, lab.ErrInvalidOption) {
				t.Errorf("BenchKeepalived: %v, want ErrInvalidOption", err)
			}
		})
	}
}

// BenchmarkKeepalived measures keepalived moving the VIP, b.N trials per case (each
// trial takes a few advert intervals; use -benchtime=10x), and reports the gap's median
// and maximum in milliseconds:
//
//	go test -count=1 -timeout 30m -run '^$' -bench Keepalived -benchtime=10x ./lab/
func BenchmarkKeepalived(b *testing.B) {
	for _, v := range []struct {
		version int
		advert  time.Duration
	}{{2, time.Second}, {3, 100 * time.Millisecond}} {
		for _, mode := range []string{lab.KeepalivedKill, lab.KeepalivedLinkDown, lab.KeepalivedStop} {
			b.Run(fmt.Sprintf("v%d-%s-%s", v.version, v.advert, mode), func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
				defer cancel()
				n := keepalivedNet(b, ctx)
				rep, err := lab.BenchKeepalived(ctx, lab.KeepalivedOptions{Binary: binary, Net: n,
					Nodes: [2]string{"a", "b"}, AdvertInt: v.advert, Version: v.version, Mode: mode, Trials: b.N})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(ms(rep.Gap.P50), "gap-p50-ms")
				b.ReportMetric(ms(rep.Gap.Max), "gap-max-ms")
			})
		}
	}
}
