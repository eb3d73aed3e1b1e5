package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/understudy-ha/understudy/lease"
)

// formatSVG is history's -o svg: the timeline drawn as a picture, one bar per event.
const formatSVG = "svg"

// Layout in SVG user units (pixels). Text is monospace so that label widths can be
// estimated from their length without measuring fonts.
const (
	svgWidth     = 1200
	svgLabelX    = 12  // left edge of the event labels
	svgBarX      = 380 // x of time 0
	svgBarWidth  = 700 // pixels of the axis; the total label goes to the right of it
	svgAxisY     = 56  // the axis line; its tick labels are above it
	svgTop       = 64  // y of the first row
	svgRowH      = 48
	svgBarH      = 18
	svgCharW     = 6.6 // one character at font-size 11
	svgSmallW    = 6.0 // one character at font-size 10
	svgLabelLen  = 54  // characters of a label that fit left of the bars: (380-12-8)/6.6
	svgStepsLen  = 134 // characters of the steps line under a bar: (1200-380-12)/6.0
	svgFailColor = "#c00000"
)

// stepColours gives every step of a takeover or release its colour, in the order of a
// takeover, which is also the legend's order. Steps named "<kind>/<resource>" share the
// colour of "<kind>/*".
var stepColours = []struct{ name, colour string }{
	{"detect", "#4e79a7"}, {"probe", "#a0cbe8"}, {"fence", "#f28e2b"}, {"revoke", "#ffbe7d"},
	{"join", "#59a14f"}, {"mark", "#8cd17d"}, {"storage", "#b6992d"}, {"exec", "#499894"},
	{"vip", "#86bcb6"}, {"health", "#d37295"}, {"release", "#9d7660"},
	{"restart/*", "#fabfd2"}, {"rollback/*", "#bab0ac"},
}

// otherColours are handed out, in order of appearance, to step names the list above
// does not know (the event format is open), so they still differ from each other.
var otherColours = []string{"#af7aa1", "#ff9da7", "#79706e", "#edc948", "#76b7b2"}

// writeHistorySVG draws the events that have timed steps (takeovers, failed takeovers,
// releases, demotions, restarts) as an SVG document: a row per event with its time,
// kind, role, node and fencing token, and a bar split into its steps on a shared time
// axis in milliseconds. Events without steps (joins, qualifications) are left out: the
// table shows them. All text from etcd is escaped.
func writeHistorySVG(w io.Writer, evs []lease.Event) error {
	var rows []lease.Event
	var longest time.Duration
	for _, ev := range evs {
		if len(ev.Steps) > 0 {
			rows = append(rows, ev)
			longest = max(longest, barLength(ev))
		}
	}
	pal := newStepPalette(rows)
	axis := newSVGAxis(longest)
	legendY := svgTop + max(len(rows), 1)*svgRowH + 12
	legend, legendH := pal.layout(legendY)
	height := legendY + legendH + 12

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="monospace" font-size="11">
<title>understudy failover timeline</title>
<rect class="background" x="0" y="0" width="%d" height="%d" fill="#ffffff"/>
<text x="%d" y="24" font-size="14" font-weight="bold">understudy failover timeline (%d %s)</text>
`, svgWidth, height, svgWidth, height, svgWidth, height, svgLabelX, len(rows),
		map[bool]string{true: "event", false: "events"}[len(rows) == 1])
	if len(rows) == 0 {
		fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\">no takeover or release events</text>\n", svgLabelX, svgTop+20)
	} else {
		axis.write(&b, svgTop+len(rows)*svgRowH)
	}
	for i, ev := range rows {
		writeSVGEvent(&b, i, ev, svgTop+i*svgRowH, axis, pal)
	}
	b.WriteString(legend)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// barLength is how long an event's bar is: its total, or the sum of its steps when the
// total is missing or (clock steps) shorter.
func barLength(ev lease.Event) time.Duration {
	var sum time.Duration
	for _, s := range ev.Steps {
		sum += max(s.Duration, 0)
	}
	return max(ev.Total, sum)
}

// writeSVGEvent draws one row: labels on the left, a grey track as long as the event's
// total, the steps one after the other on it, the total to the right and the steps as
// text (the same format as the table) under the bar, so that every duration can be
// read even where a step is too narrow to hold its label.
func writeSVGEvent(b *strings.Builder, i int, ev lease.Event, y int, axis svgAxis, pal stepPalette) {
	total := barLength(ev)
	fmt.Fprintf(b, "<g class=\"event\" id=\"event-%d\">\n<title>%s</title>\n", i, xmlText(eventTitle(ev, total)))
	kindColour := "#000000"
	if strings.HasSuffix(ev.Kind, "-failed") {
		kindColour = svgFailColor
	}
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", svgLabelX, y+16, kindColour,
		xmlText(clip(ev.Time.Local().Format("2006-01-02 15:04:05.000")+"  "+ev.Kind, svgLabelLen)))
	who := dash(ev.Role) + " on " + dash(ev.Node) + "  token " + tokenCell(ev.Token)
	if ev.From != "" {
		who += "  from " + ev.From
	}
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\">%s</text>\n", svgLabelX, y+32, xmlText(clip(who, svgLabelLen)))
	fmt.Fprintf(b, "<rect class=\"track\" x=\"%d\" y=\"%d\" width=\"%s\" height=\"%d\" fill=\"#eeeeee\"/>\n",
		svgBarX, y+6, num(axis.x(total)-svgBarX), svgBarH)
	var at time.Duration
	for _, s := range ev.Steps {
		d := max(s.Duration, 0)
		writeSVGStep(b, s, axis.x(at), max(axis.x(at+d)-axis.x(at), 1), y+6, pal.colour(s.Name))
		at += d
	}
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%d\" font-weight=\"bold\">%s</text>\n",
		num(axis.x(total)+6), y+19, xmlText(shortDuration(total)))
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" font-size=\"10\" fill=\"#555555\">%s</text>\n</g>\n",
		svgBarX, y+38, xmlText(clip(lease.FormatSteps(ev.Steps), svgStepsLen)))
}

// writeSVGStep draws one step's segment with its duration inside when it fits; a
// failed step is outlined in red and its tooltip carries the error.
func writeSVGStep(b *strings.Builder, s lease.Step, x, w float64, y int, colour string) {
	dur := strings.TrimPrefix(s.String(), s.Name+"=") // "81µs", "3s!" when failed
	title := s.Name + " " + dur
	stroke := ""
	if s.Err != "" {
		title += ": " + s.Err
		stroke = ` stroke="` + svgFailColor + `" stroke-width="2"`
	}
	fmt.Fprintf(b, "<rect class=\"step\" data-step=\"%s\" x=\"%s\" y=\"%d\" width=\"%s\" height=\"%d\" fill=\"%s\"%s><title>%s</title></rect>\n",
		xmlText(s.Name), num(x), y, num(w), svgBarH, colour, stroke, xmlText(title))
	if float64(utf8.RuneCountInString(dur))*svgSmallW+4 <= w {
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\" fill=\"%s\">%s</text>\n",
			num(x+w/2), y+13, textColour(colour), xmlText(dur))
	}
}

// eventTitle is the row's tooltip: everything about the event on one line.
func eventTitle(ev lease.Event, total time.Duration) string {
	t := fmt.Sprintf("%s %s role=%s node=%s token=%s", ev.Time.Local().Format("2006-01-02 15:04:05.000"),
		ev.Kind, dash(ev.Role), dash(ev.Node), tokenCell(ev.Token))
	if ev.From != "" {
		t += " from=" + ev.From
	}
	t += " total=" + shortDuration(total) + " steps: " + lease.FormatSteps(ev.Steps)
	if d := detailCell(ev); d != "-" {
		t += " (" + d + ")"
	}
	return t
}

// svgAxis maps durations to x: 0 at svgBarX, end at svgBarX+svgBarWidth.
type svgAxis struct {
	end, tick time.Duration
}

// newSVGAxis makes an axis a little longer than longest, with about five ticks at a
// round number of milliseconds (1, 2 or 5 times a power of ten, at least 1µs).
func newSVGAxis(longest time.Duration) svgAxis {
	longest = max(longest, time.Millisecond)
	tick := time.Microsecond
	for p := time.Microsecond; tick*5 < longest; p *= 10 {
		for _, m := range []time.Duration{1, 2, 5} {
			if tick = m * p; tick*5 >= longest {
				break
			}
		}
	}
	n := (longest + tick - 1) / tick
	return svgAxis{end: n * tick, tick: tick}
}

func (a svgAxis) x(d time.Duration) float64 {
	return svgBarX + float64(d)/float64(a.end)*svgBarWidth
}

// write draws the ticks, their labels in ms and grid lines down to bottom.
func (a svgAxis) write(b *strings.Builder, bottom int) {
	b.WriteString("<g class=\"axis\">\n")
	fmt.Fprintf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333333\"/>\n",
		svgBarX, svgAxisY, svgBarX+svgBarWidth, svgAxisY)
	for d := time.Duration(0); d <= a.end; d += a.tick {
		x := num(a.x(d))
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%d\" x2=\"%s\" y2=\"%d\" stroke=\"#e0e0e0\"/>\n", x, svgAxisY, x, bottom)
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">%s</text>\n",
			x, svgAxisY-6, strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64))
	}
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" font-size=\"10\">ms</text>\n</g>\n", svgBarX+svgBarWidth+14, svgAxisY-6)
}

// stepPalette is the colour of each step kind present in one picture, in legend order.
type stepPalette struct {
	names   []string
	colours map[string]string
	failed  bool // some step failed: the legend explains the red outline
}

func newStepPalette(evs []lease.Event) stepPalette {
	present := map[string]bool{}
	var unknown []string
	p := stepPalette{colours: map[string]string{}}
	for _, ev := range evs {
		for _, s := range ev.Steps {
			k := stepKind(s.Name)
			if !present[k] && knownColour(k) == "" {
				unknown = append(unknown, k)
			}
			present[k] = true
			p.failed = p.failed || s.Err != ""
		}
	}
	for _, c := range stepColours {
		if present[c.name] {
			p.names = append(p.names, c.name)
			p.colours[c.name] = c.colour
		}
	}
	for i, k := range unknown {
		p.names = append(p.names, k)
		p.colours[k] = otherColours[i%len(otherColours)]
	}
	return p
}

// stepKind is the legend entry of a step name: "rollback/storage" -> "rollback/*".
func stepKind(name string) string {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i] + "/*"
	}
	return name
}

func knownColour(kind string) string {
	for _, c := range stepColours {
		if c.name == kind {
			return c.colour
		}
	}
	return ""
}

func (p stepPalette) colour(name string) string {
	return p.colours[stepKind(name)]
}

// layout renders the legend from y down, wrapping at the picture's width, and returns
// it with its height.
func (p stepPalette) layout(y int) (string, int) {
	var b strings.Builder
	b.WriteString("<g class=\"legend\">\n")
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\">steps:</text>\n", svgLabelX, y+10)
	x, row := float64(svgLabelX+60), 0
	item := func(name, fill, stroke string) {
		w := 12 + 6 + float64(utf8.RuneCountInString(name))*svgCharW + 18
		if x+w > svgWidth-svgLabelX && x > svgLabelX+60 {
			x, row = svgLabelX+60, row+1
		}
		fmt.Fprintf(&b, "<rect x=\"%s\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"%s/>\n", num(x), y+row*20, fill, stroke)
		fmt.Fprintf(&b, "<text x=\"%s\" y=\"%d\">%s</text>\n", num(x+18), y+row*20+10, xmlText(name))
		x += w
	}
	for _, n := range p.names {
		item(n, p.colours[n], "")
	}
	if p.failed {
		item("failed step", "#ffffff", ` stroke="`+svgFailColor+`" stroke-width="2"`)
	}
	b.WriteString("</g>\n")
	return b.String(), (row + 1) * 20
}

// textColour picks black or white text, whichever reads better on the fill colour.
func textColour(fill string) string {
	v, err := strconv.ParseUint(strings.TrimPrefix(fill, "#"), 16, 32)
	if err != nil {
		return "#000000"
	}
	r, g, bl := float64(v>>16&0xff), float64(v>>8&0xff), float64(v&0xff)
	if 0.299*r+0.587*g+0.114*bl < 140 {
		return "#ffffff"
	}
	return "#000000"
}

// xmlText escapes s for XML text and attribute values; characters XML cannot carry
// (control characters, invalid UTF-8) become U+FFFD.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

// clip shortens s to n runes, marking the cut with "…"; the tooltips have the full text.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// num prints a coordinate with at most two decimals.
func num(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}
