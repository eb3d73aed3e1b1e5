package iscsi

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

func TestLoginTgtd(t *testing.T) {
	const user, secret = "node1", "correct-horse-battery"
	tests := []struct {
		name    string
		target  []tgtdtest.Option
		mutate  func(*Config, *Target)
		wantErr error
		check   func(t *testing.T, p Params)
	}{
		{name: "none"},
		{
			name:   "chap",
			target: []tgtdtest.Option{tgtdtest.WithCHAP(user, secret)},
			mutate: func(c *Config, _ *Target) { c.CHAPUser, c.CHAPSecret = user, secret },
		},
		{
			name:   "chap from url",
			target: []tgtdtest.Option{tgtdtest.WithCHAP(user, secret)},
			mutate: func(_ *Config, tt *Target) { tt.User, tt.Secret = user, secret },
		},
		{
			name:    "chap bad secret",
			target:  []tgtdtest.Option{tgtdtest.WithCHAP(user, secret)},
			mutate:  func(c *Config, _ *Target) { c.CHAPUser, c.CHAPSecret = user, "wrong-secret-123" },
			wantErr: ErrAuth,
		},
		{
			name:    "chap bad user",
			target:  []tgtdtest.Option{tgtdtest.WithCHAP(user, secret)},
			mutate:  func(c *Config, _ *Target) { c.CHAPUser, c.CHAPSecret = "mallory", secret },
			wantErr: ErrAuth,
		},
		{
			name:    "chap required, none offered",
			target:  []tgtdtest.Option{tgtdtest.WithCHAP(user, secret)},
			wantErr: ErrAuth,
		},
		{
			name:    "unknown target",
			mutate:  func(_ *Config, tt *Target) { tt.IQN = "iqn.2026-11.dev.understudy:nosuch" },
			wantErr: ErrTargetNotFound,
		},
		{
			name:   "digests crc32c",
			target: []tgtdtest.Option{tgtdtest.WithTargetParam("HeaderDigest", "CRC32C,None"), tgtdtest.WithTargetParam("DataDigest", "CRC32C,None")},
			mutate: func(c *Config, _ *Target) { c.HeaderDigest, c.DataDigest = true, true },
			check: func(t *testing.T, p Params) {
				if !p.HeaderDigest || !p.DataDigest {
					t.Errorf("digests not in use: %+v", p)
				}
			},
		},
		{
			name:   "initial r2t no, big segments",
			target: []tgtdtest.Option{tgtdtest.WithTargetParam("InitialR2T", "No"), tgtdtest.WithTargetParam("MaxRecvDataSegmentLength", "65536")},
			check: func(t *testing.T, p Params) {
				if p.InitialR2T || p.MaxXmitDataSegmentLength != 65536 || !p.ImmediateData {
					t.Errorf("params %+v, want InitialR2T=No MaxXmit=65536 ImmediateData=Yes", p)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := tgtdtest.Start(t, tc.target...)
			target, err := ParseURL(tg.URL(1))
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, 7)
			if tc.mutate != nil {
				tc.mutate(&cfg, &target)
			}
			ctx := testCtx(t, 20*time.Second)
			s, err := Dial(ctx, target, cfg)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrLogin) {
					t.Fatalf("Dial error = %v, want %v", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v\n%s", err, tg.LogTail())
			}
			defer s.Close(ctx)
			if tc.check != nil {
				tc.check(t, s.Params())
			}
			resp, err := s.Execute(ctx, scsi.Inquiry(false, 0, 96))
			if err != nil || resp.Err() != nil {
				t.Fatalf("INQUIRY: %v / %v", err, resp.Err())
			}
			inq, err := scsi.ParseInquiry(resp.DataIn)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("INQUIRY: %+v", inq)
		})
	}
}

func TestSCSIBasics(t *testing.T) {
	const size = 8 << 20
	tg := tgtdtest.Start(t, tgtdtest.WithLUNSize(size))
	s := dial(t, tg, 1, testConfig(t, 1))
	ctx := testCtx(t, 20*time.Second)
	tests := []struct {
		name  string
		cmd   scsi.Command
		check func(t *testing.T, r scsi.Response)
	}{
		{name: "test unit ready", cmd: scsi.TestUnitReady()},
		{name: "inquiry", cmd: scsi.Inquiry(false, 0, 96), check: func(t *testing.T, r scsi.Response) {
			inq, err := scsi.ParseInquiry(r.DataIn)
			if err != nil || inq.DeviceType != 0 {
				t.Errorf("INQUIRY %+v, %v: want a disk", inq, err)
			}
		}},
		{name: "inquiry vpd 0x83", cmd: scsi.Inquiry(true, 0x83, 255), check: func(t *testing.T, r scsi.Response) {
			if len(r.DataIn) < 4 || r.DataIn[1] != 0x83 {
				t.Errorf("VPD page % x", r.DataIn)
			}
		}},
		{name: "read capacity 16", cmd: scsi.ReadCapacity16(), check: func(t *testing.T, r scsi.Response) {
			rc, err := scsi.ParseReadCapacity16(r.DataIn)
			if err != nil || rc.Bytes() != size || rc.BlockSize != 512 {
				t.Errorf("READ CAPACITY %+v, %v: want %d bytes of 512-byte blocks", rc, err, size)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Execute(ctx, tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if errors.Is(r.Err(), scsi.ErrUnitAttention) { // first command after login may see one
				r, err = s.Execute(ctx, tc.cmd)
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Err(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	t.Run("illegal request", func(t *testing.T) {
		r, err := s.Execute(ctx, scsi.Command{CDB: []byte{0xff, 0, 0, 0, 0, 0}})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(r.Err(), scsi.ErrIllegalRequest) || len(r.Sense) == 0 {
			t.Fatalf("opcode 0xff: %v, sense % x; want ILLEGAL REQUEST with sense", r.Err(), r.Sense)
		}
	})
}
