package fence

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// Benchmarks against tgtd on loopback, two paths per node. Each reports
// ms/op and the median and 99th percentile of the individual operations
// (p50-ms, p99-ms). Run:
//
//	go test -run '^$' -bench Tgtd -benchtime 200x ./fence/

// latencies collects per-operation durations for percentile metrics.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	var sum time.Duration
	for _, d := range l {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(sum)/float64(len(l)), "ms/op")
	b.ReportMetric(ms(l[len(l)/2]), "p50-ms")
	b.ReportMetric(ms(l[min(len(l)-1, len(l)*99/100)]), "p99-ms")
	b.ReportMetric(0, "ns/op") // wall time per op is the ms/op above
}

func benchNodes(b *testing.B) (context.Context, *node, *node) {
	tg := tgtdtest.Start(b, tgtdtest.WithPortals(2))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	a, bn := newNode(b, tg, 1, 2, 1), newNode(b, tg, 2, 2, 1)
	if err := a.dev.Unfence(ctx, a.key); err != nil {
		b.Fatal(err)
	}
	if err := bn.dev.Unfence(ctx, bn.key); err != nil {
		b.Fatal(err)
	}
	return ctx, a, bn
}

// BenchmarkTgtdUnfence: Unfence of an already registered node (REGISTER
// AND IGNORE EXISTING KEY on 2 paths + READ RESERVATION): what a node pays
// to (re)join.
func BenchmarkTgtdUnfence(b *testing.B) {
	ctx, a, _ := benchNodes(b)
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := a.dev.Unfence(ctx, a.key); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	lat.report(b)
}

// BenchmarkTgtdFenceVerify: Fence (PREEMPT, as tgtd rejects PREEMPT AND
// ABORT + READ KEYS on 2 paths + READ RESERVATION); A re-registers between
// operations, outside the measurement.
func BenchmarkTgtdFenceVerify(b *testing.B) {
	ctx, a, bn := benchNodes(b)
	if err := bn.dev.Fence(ctx, bn.key, a.key); err != nil { // learns "no PREEMPT AND ABORT"
		b.Fatal(err)
	}
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if err := a.dev.Unfence(ctx, a.key); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := bn.dev.Fence(ctx, bn.key, a.key); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	lat.report(b)
}

// BenchmarkTgtdWatchdogRead: one watchdog check (READ KEYS + zero-length
// WRITE(16) probe on 2 paths): the cost paid every interval.
func BenchmarkTgtdWatchdogRead(b *testing.B) {
	ctx, a, _ := benchNodes(b)
	w := &Watchdog{Device: a.dev, Key: a.key}
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := w.check(ctx, time.Second); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	lat.report(b)
}
