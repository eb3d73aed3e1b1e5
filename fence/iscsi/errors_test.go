package iscsi

import (
	"errors"
	"fmt"
	"testing"
)

func TestLoginErrorIs(t *testing.T) {
	tests := []struct {
		class, detail byte
		want          error
		notWant       error
	}{
		{1, 1, ErrRedirect, ErrAuth},
		{2, 1, ErrAuth, ErrAuthorization},
		{2, 2, ErrAuthorization, ErrAuth},
		{2, 3, ErrTargetNotFound, ErrRedirect},
		{2, 4, ErrTargetNotFound, ErrTargetBusy},
		{3, 1, ErrTargetBusy, ErrAuth},
		{2, 0, ErrLogin, ErrAuth},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%02x%02x", tc.class, tc.detail), func(t *testing.T) {
			err := fmt.Errorf("wrapped: %w", &LoginError{Class: tc.class, Detail: tc.detail, TargetAddress: "10.0.0.1:3260,1"})
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrLogin) || errors.Is(err, tc.notWant) {
				t.Fatalf("%v: Is(%v)=%v Is(ErrLogin)=%v Is(%v)=%v", err, tc.want, errors.Is(err, tc.want),
					errors.Is(err, ErrLogin), tc.notWant, errors.Is(err, tc.notWant))
			}
		})
	}
	if !errors.Is(ErrKeepaliveTimeout, ErrConnectionLost) {
		t.Fatal("ErrKeepaliveTimeout must match ErrConnectionLost")
	}
}
