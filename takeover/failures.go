package takeover

import "time"

// failureTimeout is how long after its last failure a node forgets it (Pacemaker's
// failure-timeout): failures far apart are not "in a row", so an old one neither
// lengthens the next backoff nor counts toward the node cordoning itself.
const failureTimeout = 10 * time.Minute

// maxRoleBackoff bounds the wait after repeated failures at one role.
const maxRoleBackoff = time.Minute

// failureLog is this node's record of recent failures; loop-owned.
type failureLog struct {
	roles      map[string]int       // role -> failures since its last success, each within failureTimeout of the one before
	lastAt     map[string]time.Time // role -> its last failure (monotonic)
	streak     int                  // failed takeovers in a row, any role
	lastStreak time.Time            // the streak's last failure (monotonic)
}

func newFailureLog() failureLog {
	return failureLog{roles: map[string]int{}, lastAt: map[string]time.Time{}}
}

// countRole counts a failed takeover or a failed held role and returns the role's
// count, restarting it when the previous failure is older than failureTimeout.
func (f *failureLog) countRole(role string, now time.Time) int {
	if last, ok := f.lastAt[role]; ok && now.Sub(last) >= failureTimeout {
		f.roles[role] = 0
	}
	f.lastAt[role] = now
	f.roles[role]++
	return f.roles[role]
}

// countTakeover counts a failed takeover toward the streak and returns it.
func (f *failureLog) countTakeover(now time.Time) int {
	if now.Sub(f.lastStreak) >= failureTimeout {
		f.streak = 0
	}
	f.lastStreak = now
	f.streak++
	return f.streak
}

// success forgets the role's failures and ends the streak.
func (f *failureLog) success(role string) {
	delete(f.roles, role)
	delete(f.lastAt, role)
	f.streak = 0
}

// roleBackoff is how long a node leaves a role alone after its n-th failure at it.
func roleBackoff(ttl time.Duration, n int) time.Duration {
	return min(ttl<<min(n, 5), maxRoleBackoff)
}
