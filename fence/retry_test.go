package fence

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence/scsi"
)

func TestRetry(t *testing.T) {
	ua := fakeStep{resp: scsi.Response{Status: scsi.StatusCheckCondition, Sense: senseBytes(scsi.SenseUnitAttention, 0x29, 0)}}
	busy := fakeStep{resp: scsi.Response{Status: scsi.StatusBusy}}
	tsf := fakeStep{resp: scsi.Response{Status: scsi.StatusTaskSetFull}}
	becoming := fakeStep{resp: scsi.Response{Status: scsi.StatusCheckCondition, Sense: senseBytes(scsi.SenseNotReady, 0x04, 0x01)}}
	down := fakeStep{err: errFakeTransport}
	repeat := func(s fakeStep, n int) []fakeStep {
		out := make([]fakeStep, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	const rk, tur = scsi.OpPersistentReserveIn, scsi.OpTestUnitReady
	tests := []struct {
		name    string
		script  []fakeStep
		wantErr error
		opcodes []byte
	}{
		{"unit attention consumed by TUR then retried", []fakeStep{ua}, nil, []byte{rk, tur, rk}},
		{"two unit attentions", []fakeStep{ua, {}, ua}, nil, []byte{rk, tur, rk, tur, rk}},
		{"unit attention bounded", repeat(ua, 20), scsi.ErrUnitAttention,
			[]byte{rk, tur, rk, tur, rk, tur, rk}}, // MaxUnitAttentions 3 below; TURs also see the UA
		{"busy then ok", []fakeStep{busy, tsf}, nil, []byte{rk, rk, rk}},
		{"busy bounded by attempts", repeat(busy, 10), scsi.ErrBusy, []byte{rk, rk, rk, rk}},
		{"becoming ready retried", []fakeStep{becoming}, nil, []byte{rk, rk}},
		{"transport error retried", []fakeStep{down, down}, nil, []byte{rk, rk, rk}},
		{"transport error bounded", repeat(down, 10), errFakeTransport, []byte{rk, rk, rk, rk}},
		{"reservation conflict never retried", []fakeStep{{resp: conflict()}}, scsi.ErrReservationConflict, []byte{rk}},
		{"illegal request not retried", []fakeStep{{resp: scsi.Response{Status: scsi.StatusCheckCondition,
			Sense: senseBytes(scsi.SenseIllegalRequest, 0x24, 0)}}}, scsi.ErrIllegalRequest, []byte{rk}},
		{"medium not present not retried", []fakeStep{{resp: scsi.Response{Status: scsi.StatusCheckCondition,
			Sense: senseBytes(scsi.SenseNotReady, 0x3A, 0)}}}, scsi.ErrNotReady, []byte{rk}},
	}
	policy := RetryPolicy{MaxAttempts: 4, MaxUnitAttentions: 3, BaseDelay: time.Microsecond, MaxDelay: time.Millisecond}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakePath{lu: newFakeLU(), script: append([]fakeStep(nil), tc.script...)}
			_, err := execute(testCtx(t), p, scsi.PersistentReserveIn(scsi.PRInReadKeys, 1024), policy, zap.NewNop())
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := p.opcodes(); !bytes.Equal(got, tc.opcodes) {
				t.Errorf("opcodes % x, want % x", got, tc.opcodes)
			}
		})
	}
}

func TestRetryBackoffBoundedByContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p := &fakePath{lu: newFakeLU(), down: true}
	start := time.Now()
	_, err := execute(ctx, p, scsi.TestUnitReady(), RetryPolicy{MaxAttempts: 100, BaseDelay: 20 * time.Millisecond, MaxDelay: time.Second}, zap.NewNop())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v: backoff not bounded by ctx", d)
	}
}

func TestRetryPolicyDefaults(t *testing.T) {
	if got := (RetryPolicy{}).withDefaults(); got != DefaultRetryPolicy {
		t.Errorf("zero policy = %+v, want %+v", got, DefaultRetryPolicy)
	}
	if got := (RetryPolicy{MaxAttempts: 2}).withDefaults(); got.MaxAttempts != 2 || got.BaseDelay != DefaultRetryPolicy.BaseDelay {
		t.Errorf("partial policy = %+v", got)
	}
}
