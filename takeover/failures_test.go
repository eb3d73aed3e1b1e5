package takeover

import (
	"testing"
	"time"
)

func TestFailureLogForgetsOldFailures(t *testing.T) {
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	f := newFailureLog()
	steps := []struct {
		what             string
		role             string // "" = success at "ok"
		ok               string
		at               time.Duration
		wantRole, streak int
	}{
		{what: "first failure", role: "r1", at: 0, wantRole: 1, streak: 1},
		{what: "second, soon after", role: "r1", at: time.Minute, wantRole: 2, streak: 2},
		{what: "another role", role: "r2", at: 2 * time.Minute, wantRole: 1, streak: 3},
		{what: "r1 again after the timeout: starts over", role: "r1", at: 2*time.Minute + failureTimeout, wantRole: 1, streak: 1},
		{what: "r2 within the timeout of its last", role: "r2", at: 2*time.Minute + failureTimeout + time.Second, wantRole: 1, streak: 2},
		{what: "success at r1", ok: "r1", at: 13 * time.Minute},
		{what: "r1 after a success", role: "r1", at: 14 * time.Minute, wantRole: 1, streak: 1},
	}
	for _, s := range steps {
		if s.ok != "" {
			f.success(s.ok)
			continue
		}
		n := f.countRole(s.role, at(s.at))
		streak := f.countTakeover(at(s.at))
		if n != s.wantRole || streak != s.streak {
			t.Fatalf("%s: role count %d, streak %d; want %d, %d", s.what, n, streak, s.wantRole, s.streak)
		}
	}
}

func TestRoleBackoff(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		n    int
		want time.Duration
	}{
		{time.Second, 1, 2 * time.Second},
		{time.Second, 2, 4 * time.Second},
		{time.Second, 5, 32 * time.Second},
		{time.Second, 9, 32 * time.Second}, // the exponent stops at 5
		{2 * time.Second, 5, maxRoleBackoff},
		{10 * time.Second, 1, 20 * time.Second},
		{10 * time.Second, 3, maxRoleBackoff},
	} {
		if got := roleBackoff(tc.ttl, tc.n); got != tc.want {
			t.Errorf("roleBackoff(%s, %d) = %s, want %s", tc.ttl, tc.n, got, tc.want)
		}
	}
}
