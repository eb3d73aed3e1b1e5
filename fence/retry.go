package fence

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// RetryPolicy bounds how a command is retried on one path. The zero value
// means the defaults below.
//
//   - RESERVATION CONFLICT is never retried: it is the device's answer
//     (we are not registered, or we were fenced).
//   - UNIT ATTENTION (reset, registrations preempted, ...) is consumed with
//     TEST UNIT READY and the command retried at once, at most
//     MaxUnitAttentions times: a device reports several pending UAs one per
//     command, so one retry is not always enough.
//   - BUSY, TASK SET FULL, TASK ABORTED / ABORTED COMMAND, NOT READY "in
//     process of becoming ready" and transport errors (except ctx errors
//     and ErrNotSCSI) are retried with exponential backoff from BaseDelay,
//     doubling up to MaxDelay, for at most MaxAttempts attempts in all,
//     and never past ctx. Retrying a PR OUT after a transport error is safe
//     for the service actions used here: REGISTER AND IGNORE EXISTING KEY,
//     RESERVE and RELEASE are idempotent, and a repeated PREEMPT answers
//     RESERVATION CONFLICT, which Fence's verification resolves.
//   - Everything else (ILLEGAL REQUEST, MEDIUM ERROR, ...) fails at once.
type RetryPolicy struct {
	MaxAttempts       int           // default 5
	MaxUnitAttentions int           // default 8
	BaseDelay         time.Duration // default 20ms
	MaxDelay          time.Duration // default 1s
}

// DefaultRetryPolicy is what the zero RetryPolicy means.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 5, MaxUnitAttentions: 8, BaseDelay: 20 * time.Millisecond, MaxDelay: time.Second}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.MaxAttempts > 0 {
		d.MaxAttempts = p.MaxAttempts
	}
	if p.MaxUnitAttentions > 0 {
		d.MaxUnitAttentions = p.MaxUnitAttentions
	}
	if p.BaseDelay > 0 {
		d.BaseDelay = p.BaseDelay
	}
	if p.MaxDelay > 0 {
		d.MaxDelay = p.MaxDelay
	}
	return d
}

// errClass is how retry treats an outcome.
type errClass int

const (
	classFinal     errClass = iota // return the error as is
	classUA                        // TEST UNIT READY, then retry immediately
	classTransient                 // back off, then retry
)

// transportError marks an error a Transport returned (as opposed to a SCSI
// status), so that classification can tell them apart.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func classify(err error) errClass {
	var te *transportError
	var se *scsi.SenseError
	switch {
	case errors.Is(err, scsi.ErrReservationConflict):
		return classFinal
	case errors.As(err, &te):
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotSCSI) {
			return classFinal
		}
		return classTransient
	case errors.Is(err, scsi.ErrUnitAttention):
		return classUA
	case errors.Is(err, scsi.ErrBusy), errors.Is(err, scsi.ErrTaskSetFull), errors.Is(err, scsi.ErrAborted):
		return classTransient
	case errors.As(err, &se) && se.Sense.Key == scsi.SenseNotReady && se.Sense.ASC == 0x04 && se.Sense.ASCQ == 0x01:
		return classTransient // becoming ready
	}
	return classFinal
}

// execute runs cmd on t under policy p and returns the GOOD response, or the
// last error: a Response.Err error (scsi sentinels) or a transport error.
func execute(ctx context.Context, t Transport, cmd scsi.Command, p RetryPolicy, log *zap.Logger) (scsi.Response, error) {
	p = p.withDefaults()
	delay := p.BaseDelay
	attempts, uas := 0, 0
	for {
		attempts++
		resp, err := t.Execute(ctx, cmd)
		if err != nil {
			err = &transportError{err: err}
		} else if err = resp.Err(); err == nil {
			return resp, nil
		}
		switch classify(err) {
		case classUA:
			uas++
			if uas > p.MaxUnitAttentions {
				return resp, err
			}
			log.Info("unit attention; consuming it with TEST UNIT READY", zap.Error(err))
			// The TUR's own outcome does not matter: it exists to consume
			// the next pending UA; the retry below reports real errors.
			_, _ = t.Execute(ctx, scsi.TestUnitReady())
			attempts-- // a UA is not a failed attempt
			continue
		case classTransient:
			if attempts >= p.MaxAttempts {
				return resp, err
			}
			log.Debug("transient error; backing off", zap.Error(err), zap.Duration("delay", delay), zap.Int("attempt", attempts))
			if serr := sleepCtx(ctx, delay); serr != nil {
				return resp, errors.Join(err, serr)
			}
			delay = min(2*delay, p.MaxDelay)
			continue
		}
		return resp, err
	}
}

// sleepCtx is the documented backoff sleep: bounded by ctx.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
