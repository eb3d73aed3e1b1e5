package nemesis

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/lease"
)

// Report is what one `nemesis run` did and found.
type Report struct {
	Seed     int64         `json:"seed"`
	Scenario string        `json:"scenario"` // as asked: a name or "all"
	TTL      time.Duration `json:"ttl_ns"`
	Started  time.Time     `json:"started"`
	Wall     time.Duration `json:"wall_ns"`
	Cycles   []*Cycle      `json:"cycles"`
	// Writes per role over the whole run, and the final evidence read from the LUNs.
	Roles map[string]*RoleEvidence `json:"roles"`
	// Rejected counts the writes the target refused with RESERVATION CONFLICT: a fenced
	// node's late I/O (double-writer attempts stopped by the SAN).
	Rejected int           `json:"rejected_writes"`
	Final    []Check       `json:"final_checks"`
	Timeline []TimelineRow `json:"timeline"`
}

// Cycle is one scenario run once: its faults, what the clients saw, and the checks.
type Cycle struct {
	Scenario string    `json:"scenario"`
	Variant  string    `json:"variant,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Faults   []Fault   `json:"faults"`
	// Unavail are the per-role windows without a successful client request.
	Unavail map[string][]time.Duration `json:"unavailable_ns"`
	Acked   int                        `json:"writes_acked"`
	Failed  int                        `json:"writes_failed"`
	Checks  []Check                    `json:"checks"`
}

// Fault is one injected fault.
type Fault struct {
	At     time.Time `json:"at"`
	What   string    `json:"what"`
	Healed time.Time `json:"healed,omitzero"`
}

// Check is one invariant judged.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// RoleEvidence is one role's writes: what the clients had acknowledged, and what its
// LUN holds when read directly after the run.
type RoleEvidence struct {
	Acked  int `json:"acked"`
	Failed int `json:"failed"`
	// Lost are acknowledged writes missing from the LUN (must be none).
	Lost []int64 `json:"lost"`
	// Records is the number of records on the LUN; Tokens the distinct fencing tokens
	// in the order they appear; Backwards the records whose token is lower than one
	// before it (a fenced node's write the target accepted; must be none).
	Records   int     `json:"records"`
	Tokens    []int64 `json:"tokens"`
	Backwards int     `json:"backwards"`
}

// TimelineRow is one line of the run's timeline: a fault (by the nemesis) or an event
// of the cluster's history.
type TimelineRow struct {
	At   time.Time `json:"at"`
	Who  string    `json:"who"` // "nemesis" or the node
	What string    `json:"what"`
}

// OK reports whether every check of the run passed.
func (r *Report) OK() bool {
	for _, c := range r.Cycles {
		for _, ch := range c.Checks {
			if !ch.OK {
				return false
			}
		}
	}
	for _, ch := range r.Final {
		if !ch.OK {
			return false
		}
	}
	return true
}

func (c *Cycle) check(name string, ok bool, format string, args ...any) {
	c.Checks = append(c.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

func (c *Cycle) fault(what string) *Fault {
	c.Faults = append(c.Faults, Fault{At: time.Now(), What: what})
	return &c.Faults[len(c.Faults)-1]
}

// label is the cycle's name in tables: scenario[/variant].
func (c *Cycle) label() string {
	if c.Variant != "" {
		return c.Scenario + "/" + c.Variant
	}
	return c.Scenario
}

// Percentile is the p-th percentile (0..100, nearest rank) of ds; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// allWindows is every unavailability window of the run's cycles, over all roles.
func (r *Report) allWindows() []time.Duration {
	var all []time.Duration
	for _, c := range r.Cycles {
		for _, ws := range c.Unavail {
			all = append(all, ws...)
		}
	}
	return all
}

// WriteText writes the report as a person reads it: one line per cycle, the evidence
// per role, the checks that failed, and the timeline.
func (r *Report) WriteText(w io.Writer) {
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }
	p("nemesis run: scenario %s, seed %d, TTL %s, %d cycles in %s\n\n", r.Scenario, r.Seed, r.TTL,
		len(r.Cycles), r.Wall.Round(time.Second))
	p("%-24s %6s %6s %6s  %-28s %s\n", "cycle", "faults", "acked", "failed", "unavailable p50 / max", "checks")
	for _, c := range r.Cycles {
		var ws []time.Duration
		var worst []string
		for _, role := range sortedKeys(c.Unavail) {
			ws = append(ws, c.Unavail[role]...)
			if m := slices.Max(append([]time.Duration{0}, c.Unavail[role]...)); m > 0 {
				worst = append(worst, role+" "+lease.CompactDuration(m))
			}
		}
		failed := 0
		for _, ch := range c.Checks {
			if !ch.OK {
				failed++
			}
		}
		verdict := fmt.Sprintf("%d ok", len(c.Checks))
		if failed > 0 {
			verdict = fmt.Sprintf("%d of %d FAILED", failed, len(c.Checks))
		}
		p("%-24s %6d %6d %6d  %-28s %s\n", c.label(), len(c.Faults), c.Acked, c.Failed,
			fmt.Sprintf("%s / %s", lease.CompactDuration(Percentile(ws, 50)), lease.CompactDuration(Percentile(ws, 100))), verdict)
		if len(worst) > 0 {
			p("%-24s   longest per role: %s\n", "", strings.Join(worst, ", "))
		}
	}
	all := r.allWindows()
	p("\nunavailability windows over the run: %d, p50 %s, max %s\n", len(all),
		lease.CompactDuration(Percentile(all, 50)), lease.CompactDuration(Percentile(all, 100)))
	p("writes rejected by the target (RESERVATION CONFLICT): %d\n\n", r.Rejected)
	p("%-8s %7s %7s %5s %8s %9s  %s\n", "role", "acked", "failed", "lost", "on LUN", "backwards", "tokens on the LUN, in order")
	for _, role := range sortedKeys(r.Roles) {
		e := r.Roles[role]
		p("%-8s %7d %7d %5d %8d %9d  %v\n", role, e.Acked, e.Failed, len(e.Lost), e.Records, e.Backwards, e.Tokens)
	}
	p("\n")
	for _, c := range r.Cycles {
		for _, ch := range c.Checks {
			if !ch.OK {
				p("FAILED %s: %s: %s\n", c.label(), ch.Name, ch.Detail)
			}
		}
	}
	for _, ch := range r.Final {
		mark := "ok    "
		if !ch.OK {
			mark = "FAILED"
		}
		p("%s %s: %s\n", mark, ch.Name, ch.Detail)
	}
	p("\ntimeline:\n")
	for _, row := range r.Timeline {
		p("  %s +%-8s %-8s %s\n", row.At.Format("15:04:05.000"), lease.CompactDuration(row.At.Sub(r.Started)), row.Who, row.What)
	}
	if r.OK() {
		p("\nPASS: every invariant held (seed %d)\n", r.Seed)
	} else {
		p("\nFAIL: replay with --seed %d\n", r.Seed)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
