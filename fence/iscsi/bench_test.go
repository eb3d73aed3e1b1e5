package iscsi

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

const benchLUNSize = 256 << 20

// benchSession starts tgtd (segments of 256 KiB both ways) and logs in.
func benchSession(b *testing.B, opts ...tgtdtest.Option) *Session {
	b.Helper()
	opts = append([]tgtdtest.Option{tgtdtest.WithLUNSize(benchLUNSize),
		tgtdtest.WithTargetParam("MaxRecvDataSegmentLength", "262144")}, opts...)
	tg := tgtdtest.Start(b, opts...)
	cfg := testConfig(b, 1)
	cfg.Logger = nil
	s := dial(b, tg, 1, cfg)
	clearUA(b, s)
	return s
}

// BenchmarkRandomWrite4K: 4 KiB WRITE(16)s at random aligned offsets, at
// queue depth 1 and 16 (concurrent Execute calls on one session).
func BenchmarkRandomWrite4K(b *testing.B) {
	for _, qd := range []int{1, 16} {
		b.Run(map[int]string{1: "qd1", 16: "qd16"}[qd], func(b *testing.B) {
			s := benchSession(b)
			ctx := testCtx(b, 5*time.Minute)
			data := randomBytes(1, 4096)
			var n atomic.Int64
			var wg sync.WaitGroup
			errc := make(chan error, qd)
			b.SetBytes(4096)
			b.ResetTimer()
			start := time.Now()
			for w := range qd {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					for n.Add(1) <= int64(b.N) {
						lba := rng.Uint64N(benchLUNSize/4096) * 8
						r, err := s.Execute(ctx, scsi.Write16(lba, 8, false, data))
						if err == nil {
							err = r.Err()
						}
						if err != nil {
							errc <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(errc)
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "IOPS")
		})
	}
}

// BenchmarkSequentialWrite: 1 MiB WRITE(16)s front to back (R2T bursts of
// MaxBurstLength after the first burst).
func BenchmarkSequentialWrite(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []tgtdtest.Option
	}{
		{name: "initialr2t-yes"},
		{name: "initialr2t-no", opts: []tgtdtest.Option{tgtdtest.WithTargetParam("InitialR2T", "No")}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := benchSession(b, tc.opts...)
			ctx := testCtx(b, 5*time.Minute)
			const chunk = 1 << 20
			data := randomBytes(2, chunk)
			b.SetBytes(chunk)
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				lba := uint64(i%(benchLUNSize/chunk)) * chunk / 512
				r, err := s.Execute(ctx, scsi.Write16(lba, chunk/512, false, data))
				if err == nil {
					err = r.Err()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*chunk/(1<<20)/time.Since(start).Seconds(), "MiB/s")
		})
	}
}

// BenchmarkReadCapacity: round-trip latency of a small data-in command.
func BenchmarkReadCapacity(b *testing.B) {
	s := benchSession(b)
	ctx := testCtx(b, 5*time.Minute)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		r, err := s.Execute(ctx, scsi.ReadCapacity16())
		if err == nil {
			err = r.Err()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/op")
}
