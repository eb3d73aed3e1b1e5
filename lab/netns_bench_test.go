//go:build linux

package lab_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/takeover"
)

// benchSteps are the takeover event's steps the benchmark reports, in chain order.
var benchSteps = []string{"detect", "fence", "mark", "storage", "exec", "vip", "health"}

// clientPoller starts a GET of the VIP from the client namespace every 10 ms, each on
// its own (bounded by the client's 250 ms timeout), so that a GET stuck on a dead
// holder does not lower the resolution, and records when each successful one started,
// ended and which node answered.
type clientPoller struct {
	mu   sync.Mutex // guards oks
	oks  []served
	stop context.CancelFunc
	done chan struct{}
}

type served struct {
	start, end time.Time
	node       string
}

func (l *netLab) startPoller() *clientPoller {
	ctx, cancel := context.WithCancel(l.ctx)
	p := &clientPoller{stop: cancel, done: make(chan struct{})}
	go func() { // owned by the poller: Stop cancels and waits, also for each GET
		defer close(p.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			wg.Go(func() {
				start := time.Now()
				if rep, err := l.get(ctx); err == nil {
					p.mu.Lock()
					p.oks = append(p.oks, served{start: start, end: time.Now(), node: rep.Node})
					p.mu.Unlock()
				}
			})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// Stop ends the polling and returns the successes, by start time.
func (p *clientPoller) Stop() []served {
	p.stop()
	<-p.done
	slices.SortFunc(p.oks, func(a, b served) int { return a.start.Compare(b.start) })
	return p.oks
}

// wait waits (bounded) until a GET answered by node started after since.
func (p *clientPoller) wait(t testing.TB, ctx context.Context, node string, since time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, netWait)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		ok := slices.ContainsFunc(p.oks, func(s served) bool { return s.node == node && s.start.After(since) })
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("client: no answer from %s at %s: %v", node, netVIP, ctx.Err())
		case <-tick.C:
		}
	}
}

// longestGap is the longest time between the starts of two consecutive successful GETs.
func longestGap(oks []served) time.Duration {
	var gap time.Duration
	for i := 1; i < len(oks); i++ {
		gap = max(gap, oks[i].start.Sub(oks[i-1].start))
	}
	return gap
}

// failover crashes holder and measures until to serves; then reboots holder as standby.
func (l *netLab) failover(holder, to string, samples map[string][]time.Duration) {
	l.t.Helper()
	p := l.startPoller()
	p.wait(l.t, l.ctx, holder, time.Time{})
	killed := l.crash(holder)
	cs := l.waitStatus(to+" holds "+netRole, holds(netRole, to))
	p.wait(l.t, l.ctx, to, killed)
	oks := p.Stop()
	for _, s := range oks {
		if s.node == to && s.start.After(killed) {
			samples["kill-to-served"] = append(samples["kill-to-served"], s.end.Sub(killed))
			break
		}
	}
	samples["client-gap"] = append(samples["client-gap"], longestGap(oks))
	r, _ := lab.FindRole(cs, netRole)
	ev := l.takeoverEvent(netRole, r.Token)
	for _, s := range ev.Steps {
		samples[s.Name] = append(samples[s.Name], s.Duration)
	}
	samples["total"] = append(samples["total"], ev.Total)
	l.reboot(holder)
	l.waitStatus(holder+" is standby", isState(holder, takeover.StateStandby))
}

// BenchmarkTakeoverSteps fails the role over between two namespace nodes b.N times
// (crash = agent SIGKILL + eth0 down; the crashed node then reboots as standby) and
// reports the median and max of every takeover step and of what the client saw. Run:
//
//	UNDERSTUDY_REQUIRE_ALL=1 go test -race -count=1 -timeout 900s -run '^$' \
//	    -bench TakeoverSteps -benchtime 20x ./lab/
func BenchmarkTakeoverSteps(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	l := newNetLab(b, ctx, "a", "b")
	l.startAgent("a")
	l.waitStatus("a holds web", holds(netRole, "a"))
	l.startAgent("b")
	l.waitStatus("b is standby", isState("b", takeover.StateStandby))
	samples := map[string][]time.Duration{}
	holder, other := "a", "b"
	for b.Loop() {
		l.failover(holder, other, samples)
		holder, other = other, holder
	}
	// Printed, not logged: the testing package cuts a benchmark's log to 10 lines.
	fmt.Printf("takeover steps over %d failovers (TTL %s):\n%s", len(samples["total"]), netTTL, stepTable(samples))
	for _, name := range append(benchSteps, "client-gap", "kill-to-served") {
		st := lab.Summarise(samples[name])
		b.ReportMetric(ms(st.P50), name+"-p50-ms")
		b.ReportMetric(ms(st.Max), name+"-max-ms")
	}
}

// stepTable formats median and max of each step, the event's total and the client's view.
func stepTable(samples map[string][]time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-16s %4s %10s %10s\n", "step", "n", "median", "max")
	for _, name := range append(benchSteps, "total", "client-gap", "kill-to-served") {
		st := lab.Summarise(samples[name])
		fmt.Fprintf(&sb, "%-16s %4d %10s %10s\n", name, st.N, st.P50.Round(100*time.Microsecond), st.Max.Round(100*time.Microsecond))
	}
	return sb.String()
}
