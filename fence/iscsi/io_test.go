package iscsi

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// TestDeviceRandomIO writes 1 MiB of random data in random (also
// unaligned) pieces at random offsets, reads each back through the
// initiator and checks the backing file byte for byte.
func TestDeviceRandomIO(t *testing.T) {
	const size = 16 << 20
	tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(size))
	s := dial(t, tg, 1, testConfig(t, 1))
	ctx := testCtx(t, 60*time.Second)
	d, err := s.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Size() != size || d.BlockSize() != 512 {
		t.Fatalf("Size %d BlockSize %d, want %d / 512", d.Size(), d.BlockSize(), size)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	shadow := make([]byte, size)
	for total := 0; total < 1<<20; {
		n := 1 + rng.IntN(96<<10)
		off := rng.Int64N(size - int64(n))
		if rng.IntN(2) == 0 { // half aligned
			off &^= 511
			n = (n + 511) &^ 511
		}
		buf := randomBytes(rng.Uint64(), n)
		if w, err := d.WriteAtContext(ctx, buf, off); err != nil || w != n {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", n, off, w, err)
		}
		copy(shadow[off:], buf)
		got := make([]byte, n)
		if r, err := d.ReadAt(got, off); err != nil || r != n || !bytes.Equal(got, buf) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; equal=%v", n, off, r, err, bytes.Equal(got, buf))
		}
		total += n
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(tg.BackingFile(1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, shadow) {
		t.Fatal("backing file differs from what was written")
	}
	t.Run("read at end", func(t *testing.T) {
		buf := make([]byte, 1000)
		n, err := d.ReadAt(buf, size-100)
		if n != 100 || !errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt past end = %d, %v; want 100, io.EOF", n, err)
		}
		if !bytes.Equal(buf[:100], shadow[size-100:]) {
			t.Fatal("tail data differs")
		}
	})
	t.Run("write past end", func(t *testing.T) {
		if _, err := d.WriteAt(make([]byte, 1024), size-512); !errors.Is(err, ErrConfig) {
			t.Fatalf("WriteAt past end: %v, want ErrConfig", err)
		}
	})
}

// TestLargeTransfers moves single commands far bigger than
// FirstBurstLength and MaxBurstLength under each data-out policy, so R2T
// sequences, unsolicited Data-Out and multi-PDU Data-In are all exercised.
func TestLargeTransfers(t *testing.T) {
	tests := []struct {
		name   string
		target []tgtdtest.Option
		cfg    func(*Config)
		want   func(Params) bool
	}{
		{name: "initial r2t yes, immediate data", want: func(p Params) bool { return p.InitialR2T && p.ImmediateData }},
		{name: "initial r2t yes, no immediate data", cfg: func(c *Config) { c.NoImmediateData = true },
			want: func(p Params) bool { return p.InitialR2T && !p.ImmediateData }},
		{name: "initial r2t no", target: []tgtdtest.Option{tgtdtest.WithTargetParam("InitialR2T", "No")},
			want: func(p Params) bool { return !p.InitialR2T && p.ImmediateData }},
		{name: "initial r2t no, no immediate data, digests, big segments",
			target: []tgtdtest.Option{tgtdtest.WithTargetParam("InitialR2T", "No"),
				tgtdtest.WithTargetParam("MaxRecvDataSegmentLength", "262144"),
				tgtdtest.WithTargetParam("HeaderDigest", "CRC32C"), tgtdtest.WithTargetParam("DataDigest", "CRC32C")},
			cfg: func(c *Config) {
				c.NoImmediateData, c.HeaderDigest, c.DataDigest, c.MaxRecvDataSegmentLength = true, true, true, 32<<10
			},
			want: func(p Params) bool { return !p.InitialR2T && !p.ImmediateData && p.DataDigest }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := tgtdtest.Start(t, append(tc.target, tgtdtest.WithLUNSize(16<<20))...)
			cfg := testConfig(t, 3)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			s := dial(t, tg, 1, cfg)
			if p := s.Params(); !tc.want(p) {
				t.Fatalf("negotiated %+v", p)
			}
			ctx := testCtx(t, 60*time.Second)
			clearUA(t, s)
			for _, n := range []int{512, 8192, 65536 + 512, 3<<20 + 4096} {
				data := randomBytes(uint64(n), n)
				lba := uint64(n % 4096)
				r, err := s.Execute(ctx, scsi.Write16(lba, uint32(n/512), false, data))
				if err != nil || r.Err() != nil {
					t.Fatalf("WRITE(16) %d bytes: %v / %v", n, err, r.Err())
				}
				r, err = s.Execute(ctx, scsi.Read16(lba, uint32(n/512), false, 512))
				if err != nil || r.Err() != nil {
					t.Fatalf("READ(16) %d bytes: %v / %v", n, err, r.Err())
				}
				if !bytes.Equal(r.DataIn, data) {
					t.Fatalf("%d bytes: read back differs", n)
				}
			}
		})
	}
}

// TestConcurrentCommands runs commands from many goroutines on one session.
func TestConcurrentCommands(t *testing.T) {
	tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(8<<20))
	s := dial(t, tg, 1, testConfig(t, 1))
	ctx := testCtx(t, 60*time.Second)
	d, err := s.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 16)
	for g := range 16 {
		go func() {
			buf := bytes.Repeat([]byte{byte(g)}, 64<<10)
			off := int64(g) * (256 << 10)
			for range 10 {
				if _, err := d.WriteAtContext(ctx, buf, off); err != nil {
					errc <- err
					return
				}
				got := make([]byte, len(buf))
				if _, err := d.ReadAtContext(ctx, got, off); err != nil || !bytes.Equal(got, buf) {
					errc <- errors.Join(err, errors.New("data differs"))
					return
				}
			}
			errc <- nil
		}()
	}
	for range 16 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}).Read(b)
	return b
}

// clearUA consumes the UNIT ATTENTION tgtd raises for a new session.
func clearUA(t testing.TB, s *Session) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	for range 5 {
		r, err := s.Execute(ctx, scsi.TestUnitReady())
		if err != nil {
			t.Fatal(err)
		}
		if r.Err() == nil {
			return
		}
		if !errors.Is(r.Err(), scsi.ErrUnitAttention) {
			t.Fatalf("TEST UNIT READY: %v", r.Err())
		}
	}
	t.Fatal("UNIT ATTENTION does not clear")
}
