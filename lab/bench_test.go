package lab_test

import (
	"context"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
)

// BenchmarkFailover crashes role-a's holder b.N times (each trial ~2 s with TTL 1 s; use
// -benchtime=10x) and reports the medians and maxima in milliseconds.
func BenchmarkFailover(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rep, err := lab.BenchFailover(ctx, lab.BenchOptions{Binary: binary, Trials: b.N})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ms(rep.ClientGap.P50), "gap-p50-ms")
	b.ReportMetric(ms(rep.ClientGap.Max), "gap-max-ms")
	b.ReportMetric(ms(rep.FailToRunning.P50), "kill-p50-ms")
	b.ReportMetric(ms(rep.DetectToRunning.P50), "detect-p50-ms")
	b.ReportMetric(ms(rep.DetectToRunning.Max), "detect-max-ms")
}

// BenchmarkMove moves role-a b.N times with `role move` (use -benchtime=10x).
func BenchmarkMove(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rep, err := lab.BenchMove(ctx, lab.BenchOptions{Binary: binary, Trials: b.N})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ms(rep.CommandToRunning.P50), "move-p50-ms")
	b.ReportMetric(ms(rep.CommandToRunning.Max), "move-max-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func TestSummarise(t *testing.T) {
	tests := []struct {
		name string
		in   []time.Duration
		want lab.Stats
	}{
		{"empty", nil, lab.Stats{}},
		{"one", []time.Duration{5}, lab.Stats{N: 1, Min: 5, P50: 5, P95: 5, Max: 5}},
		{"ten unsorted", []time.Duration{10, 1, 9, 2, 8, 3, 7, 4, 6, 5},
			lab.Stats{N: 10, Min: 1, P50: 5, P95: 10, Max: 10}},
		{"twenty", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
			lab.Stats{N: 20, Min: 1, P50: 10, P95: 19, Max: 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := lab.Summarise(tc.in); got != tc.want {
				t.Errorf("Summarise(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}
