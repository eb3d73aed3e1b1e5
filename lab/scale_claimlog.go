package lab

// The scale bench's claim log (scale.go): what the lightweight agents report to the
// bench, and the waits of the run's phases on it.

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
)

// scaleClaim is one successful claim (TryClaim won and MarkHolder done).
type scaleClaim struct {
	Role, Node string
	Token      int64
	// PrevNode and PrevToken are the last holder TryClaim read in its transaction.
	PrevNode            string
	PrevToken           int64
	ClaimedAt, MarkedAt time.Time
}

// claimLog is what the agents report to the bench. Waiters block on changed, which every
// report closes and replaces.
type claimLog struct {
	mu        sync.Mutex
	changed   chan struct{}         // guarded by mu
	claims    []scaleClaim          // guarded by mu; in report order
	latest    map[string]scaleClaim // guarded by mu; highest token by role
	firstMark map[string]time.Time  // guarded by mu; first MarkHolder by role
	joins     map[string]int        // guarded by mu; sessions that registered, by node
	firstJoin map[string]time.Time  // guarded by mu; by node
	won       map[wonKey]string     // guarded by mu; node of every TryClaim won, by role and token
	races     int                   // guarded by mu; TryClaims that found the role held
	strandedN int                   // guarded by mu; own claims found unheld (see strays)
	errs      int                   // guarded by mu
	lostN     int                   // guarded by mu
}

// wonKey names one claim: a role and its token.
type wonKey struct {
	role  string
	token int64
}

func newClaimLog() *claimLog {
	return &claimLog{changed: make(chan struct{}), latest: map[string]scaleClaim{}, won: map[wonKey]string{},
		firstMark: map[string]time.Time{}, joins: map[string]int{}, firstJoin: map[string]time.Time{}}
}

// update applies f under the lock and wakes the waiters.
func (l *claimLog) update(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *claimLog) claimed(c scaleClaim) {
	l.update(func() {
		l.claims = append(l.claims, c)
		if c.Token > l.latest[c.Role].Token {
			l.latest[c.Role] = c
		}
		if _, ok := l.firstMark[c.Role]; !ok {
			l.firstMark[c.Role] = c.MarkedAt
		}
	})
}

func (l *claimLog) joined(node string) {
	now := time.Now()
	l.update(func() {
		l.joins[node]++
		if _, ok := l.firstJoin[node]; !ok {
			l.firstJoin[node] = now
		}
	})
}

func (l *claimLog) failed(log *zap.Logger, node, role string, err error) {
	log.Warn("scale agent: claim", zap.String("node", node), zap.String("role", role), zap.Error(err))
	l.update(func() { l.errs++ })
}

func (l *claimLog) lost(log *zap.Logger, node string, err error) {
	log.Warn("scale agent: session ended", zap.String("node", node), zap.Error(err))
	l.update(func() { l.lostN++ })
}

func (l *claimLog) holder(role string) (scaleClaim, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.latest[role]
	return c, ok
}

func (l *claimLog) joinCount(node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.joins[node]
}

func (l *claimLog) counts() (claims, races, stranded, errs, lost int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.claims), l.races, l.strandedN, l.errs, l.lostN
}

// wonRace records a TryClaim won, whatever happens to the claim next.
func (l *claimLog) wonRace(role, node string, token int64) {
	l.mu.Lock()
	l.won[wonKey{role, token}] = node
	l.mu.Unlock()
}

// stranded counts a claim found under an agent's own lease that it did not hold.
func (l *claimLog) stranded() {
	l.mu.Lock()
	l.strandedN++
	l.mu.Unlock()
}

// raced counts a lost race; waiters need not wake for it.
func (l *claimLog) raced() {
	l.mu.Lock()
	l.races++
	l.mu.Unlock()
}

// wait blocks until cond (called with the lock held) is true or ctx ends, writing the
// log's summary to progress (if not nil) every scaleProgress meanwhile.
func (l *claimLog) wait(ctx context.Context, what string, progress io.Writer, cond func(l *claimLog) bool) error {
	tick := time.NewTicker(scaleProgress)
	defer tick.Stop()
	for {
		l.mu.Lock()
		ok, ch := cond(l), l.changed
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s (%s): %w", ErrWait, what, l.summary(), ctx.Err())
		case <-ch:
		case <-tick.C:
			if progress != nil {
				_, _ = fmt.Fprintf(progress, "  ... %s\n", l.summary())
			}
		}
	}
}

// summary says how far the agents got, for progress and for a wait that timed out.
func (l *claimLog) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("nodes joined %d, roles claimed %d, claims %d, lost races %d, stranded %d, claim errors %d, sessions lost %d",
		len(l.firstJoin), len(l.firstMark), len(l.claims), l.races, l.strandedN, l.errs, l.lostN)
}
