package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
)

// svgDoc is what the tests read back from the picture.
type svgDoc struct {
	XMLName xml.Name
	Groups  []svgGroup `xml:"g"`
}

type svgGroup struct {
	Class string    `xml:"class,attr"`
	Title string    `xml:"title"`
	Rects []svgRect `xml:"rect"`
	Texts []string  `xml:"text"`
}

type svgRect struct {
	Class  string `xml:"class,attr"`
	Step   string `xml:"data-step,attr"`
	Stroke string `xml:"stroke,attr"`
	Title  string `xml:"title"`
}

// parseSVG proves the output well-formed (every token decodes, to the end) and returns
// its structure.
func parseSVG(t *testing.T, out string) svgDoc {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(out))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, out)
		}
	}
	var doc svgDoc
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if doc.XMLName.Local != "svg" || doc.XMLName.Space != "http://www.w3.org/2000/svg" {
		t.Errorf("root element %+v, want svg in the SVG namespace", doc.XMLName)
	}
	return doc
}

func (d svgDoc) groups(class string) []svgGroup {
	var gs []svgGroup
	for _, g := range d.Groups {
		if g.Class == class {
			gs = append(gs, g)
		}
	}
	return gs
}

func steps(names ...string) []lease.Step {
	s := make([]lease.Step, len(names))
	for i, n := range names {
		s[i] = lease.Step{Name: n, Duration: time.Duration(i+1) * 7 * time.Millisecond}
	}
	return s
}

func TestHistorySVG(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	failed := steps("detect", "fence", "mark", "storage", "rollback/storage")
	failed[3].Err = "mount /dev/sdb: <busy> & \"stuck\""
	tests := []struct {
		name       string
		evs        []lease.Event
		wantSteps  []int    // step rects in each event group, in order
		wantText   []string // substrings of the decoded text (titles and labels)
		wantLegend []string
	}{
		{
			name: "full fast takeover",
			evs: []lease.Event{{Time: t0, Role: "web", Node: "node-d", Kind: "takeover", Token: 18, From: "node-a",
				Steps: steps("detect", "probe", "fence", "revoke", "mark", "storage", "exec", "vip", "health"),
				Total: 400 * time.Millisecond}},
			wantSteps:  []int{9},
			wantText:   []string{"web on node-d  token 18  from node-a", "takeover", "total=400ms", "fence 21ms"},
			wantLegend: []string{"detect", "probe", "fence", "revoke", "mark", "storage", "exec", "vip", "health"},
		},
		{
			name: "failed takeover, release, join left out",
			evs: []lease.Event{
				{Time: t0, Node: "node-d", Kind: "join"},
				{Time: t0.Add(time.Second), Role: "db", Node: "node-d", Kind: "takeover-failed", Token: 7, Steps: failed},
				{Time: t0.Add(2 * time.Second), Role: "db", Node: "node-e", Kind: "release", Token: 9,
					Steps: steps("health", "vip", "exec", "storage", "release")},
			},
			wantSteps:  []int{5, 5},
			wantText:   []string{"takeover-failed", "storage 28ms!: mount /dev/sdb: <busy> & \"stuck\"", "release"},
			wantLegend: []string{"rollback/*", "release", "failed step"},
		},
		{
			name: "names are escaped",
			evs: []lease.Event{{Time: t0, Role: `web<&">`, Node: `n<&">'`, Kind: "takeover", Token: 1,
				Steps: []lease.Step{{Name: `odd<&">`, Duration: time.Millisecond, Err: "bad\x01byte"}}}},
			wantSteps:  []int{1},
			wantText:   []string{`web<&"> on n<&">'`, `odd<&"> 1ms!: bad` + "\uFFFD" + "byte"},
			wantLegend: []string{`odd<&">`, "failed step"},
		},
		{
			name:      "zero durations",
			evs:       []lease.Event{{Time: t0, Role: "web", Node: "a", Kind: "takeover", Steps: []lease.Step{{Name: "fence"}, {Name: "exec"}}}},
			wantSteps: []int{2},
			wantText:  []string{"total=0s"},
		},
		{
			name:     "no events",
			wantText: []string{"no takeover or release events"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeHistorySVG(&out, tc.evs); err != nil {
				t.Fatal(err)
			}
			for _, raw := range []string{`<&"`, "\x01"} {
				if strings.Contains(out.String(), raw) {
					t.Errorf("output contains unescaped %q", raw)
				}
			}
			doc := parseSVG(t, out.String())
			events := doc.groups("event")
			if len(events) != len(tc.wantSteps) {
				t.Fatalf("%d event groups, want %d", len(events), len(tc.wantSteps))
			}
			var text []string
			for i, g := range events {
				n := 0
				for _, r := range g.Rects {
					if r.Class == "step" {
						n++
						text = append(text, r.Title)
					}
				}
				if n != tc.wantSteps[i] {
					t.Errorf("event %d: %d step rects, want %d", i, n, tc.wantSteps[i])
				}
				text = append(append(text, g.Title), g.Texts...)
			}
			text = append(text, strings.Join(doc.groups("legend")[0].Texts, "|"))
			if len(tc.evs) == 0 {
				text = append(text, out.String())
			}
			all := strings.Join(text, "\n")
			for _, want := range append(tc.wantText, tc.wantLegend...) {
				if !strings.Contains(all, want) {
					t.Errorf("picture lacks %q:\n%s", want, all)
				}
			}
		})
	}
}

func TestHistorySVGAxis(t *testing.T) {
	tests := []struct {
		name      string
		longest   time.Duration
		end, tick time.Duration
	}{
		{"nothing", 0, time.Millisecond, 200 * time.Microsecond},
		{"microseconds", 80 * time.Microsecond, time.Millisecond, 200 * time.Microsecond},
		{"fast takeover", 120 * time.Millisecond, 150 * time.Millisecond, 50 * time.Millisecond},
		{"lease expiry", 3200 * time.Millisecond, 4 * time.Second, time.Second},
		{"exactly five ticks", 10 * time.Second, 10 * time.Second, 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newSVGAxis(tc.longest)
			if a.end != tc.end || a.tick != tc.tick {
				t.Errorf("axis for %s: end %s tick %s, want %s and %s", tc.longest, a.end, a.tick, tc.end, tc.tick)
			}
			if got := a.x(a.end); got != svgBarX+svgBarWidth {
				t.Errorf("x(end) = %v, want %d", got, svgBarX+svgBarWidth)
			}
		})
	}
}

// TestHistorySVGCommand runs `history -o svg` against events in a real etcd.
func TestHistorySVGCommand(t *testing.T) {
	c := newCluster(t, leasetest.Start(t), "histsvg")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ev := range []lease.Event{
		{Node: "node-d", Kind: "join"},
		{Role: "web", Node: "node-d", Kind: "takeover", Token: 42, From: "node-a",
			Steps: steps("detect", "fence", "mark", "exec"), Total: 90 * time.Millisecond},
		{Role: "db", Node: "node-d", Kind: "takeover", Token: 43, Steps: steps("fence", "exec")},
	} {
		if err := c.st.AppendEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		args   []string
		events int
	}{
		{"all roles", []string{"history", "-o", "svg"}, 2},
		{"one role", []string{"history", "web", "-o", "svg"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := c.mustCLI(exitOK, tc.args...)
			if n := len(parseSVG(t, out).groups("event")); n != tc.events {
				t.Errorf("%d event groups, want %d", n, tc.events)
			}
		})
	}
	t.Run("--svg FILE with the table on stdout", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "timeline.svg")
		out := c.mustCLI(exitOK, "history", "--svg", file)
		if !strings.Contains(out, "takeover") {
			t.Errorf("stdout is not the table:\n%s", out)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(parseSVG(t, string(b)).groups("event")); n != 2 {
			t.Errorf("%d event groups in %s, want 2", n, file)
		}
	})
}
