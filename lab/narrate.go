package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// IsTerminal reports whether w is an interactive terminal (a character device), the
// only case where the demo uses colours.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// narrator prints the demo: sections, timed steps, tables.
type narrator struct {
	w      io.Writer
	colour bool
	start  time.Time // of the whole demo
	step   time.Time // of the current step
}

func newNarrator(w io.Writer, colour bool) *narrator {
	now := time.Now()
	return &narrator{w: w, colour: colour, start: now, step: now}
}

func (n *narrator) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(n.w, format, args...)
}

// section starts a part of the story, e.g. a figure of the seed.
func (n *narrator) section(title string) {
	n.printf("\n%s\n", paint(n.colour, ansiBold, "== "+title+" "+strings.Repeat("=", max(0, 70-len(title)))))
}

// begin starts a timed step and says what the lab does.
func (n *narrator) begin(format string, args ...any) {
	n.step = time.Now()
	n.printf("%s %s\n", paint(n.colour, ansiDim, fmt.Sprintf("[%6.1fs]", time.Since(n.start).Seconds())),
		paint(n.colour, ansiBold, fmt.Sprintf(format, args...)))
}

// done reports the outcome of the current step with its elapsed time.
func (n *narrator) done(format string, args ...any) {
	n.printf("          %s %s %s\n", paint(n.colour, ansiGreen, "✓"), fmt.Sprintf(format, args...),
		paint(n.colour, ansiDim, "("+lease.CompactDuration(time.Since(n.step))+")"))
}

// note prints an indented remark.
func (n *narrator) note(format string, args ...any) {
	n.printf("          %s\n", fmt.Sprintf(format, args...))
}

// status prints the cluster status with who answers on each service port.
func (n *narrator) status(ctx context.Context, f *Farm) {
	cs, err := f.Status(ctx)
	if err != nil {
		n.note("status: %v", err)
		return
	}
	n.printf("\n")
	WriteStatus(n.w, cs, f.ServedBy(ctx), n.colour)
	n.printf("\n")
}

// timeline prints events as `understudy history` has them, with per-step durations.
func (n *narrator) timeline(evs []lease.Event) {
	var rows [][]string
	var paints []string
	for _, ev := range evs {
		total := "-"
		if ev.Total > 0 {
			total = lease.CompactDuration(ev.Total)
		}
		rows = append(rows, []string{ev.Time.Local().Format("15:04:05.000"), dash(ev.Role), ev.Kind,
			dash(ev.Node), dash(ev.From), tokenText(ev.Token), lease.FormatSteps(ev.Steps), total})
		p := ""
		switch ev.Kind {
		case takeover.EventTakeover:
			p = ansiGreen
		case takeover.EventTakeoverFailed, takeover.EventDemote, takeover.EventLost:
			p = ansiRed
		}
		paints = append(paints, p)
	}
	n.printf("\n")
	writeTable(n.w, []string{"TIME", "ROLE", "KIND", "NODE", "FROM", "TOKEN", "STEPS", "TOTAL"}, rows, 2, paints, n.colour)
	n.printf("\n")
}
