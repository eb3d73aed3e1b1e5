package nemesis

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
)

func TestParseArping(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want []string
	}{
		{"one host", "ARPING 192.0.2.50 from 192.0.2.100 eth0\nUnicast reply from 192.0.2.50 [02:00:00:01:00:0D]  0.612ms\nSent 1 probes (1 broadcast(s))\nReceived 1 response(s)\n",
			[]string{"02:00:00:01:00:0d"}},
		{"two hosts, one twice", "Unicast reply from 192.0.2.50 [02:00:00:01:00:0D]  0.6ms\nUnicast reply from 192.0.2.50 [02:00:00:01:00:64]  0.7ms\nUnicast reply from 192.0.2.50 [02:00:00:01:00:0d]  0.6ms\n",
			[]string{"02:00:00:01:00:0d", "02:00:00:01:00:64"}},
		{"nobody", "ARPING 192.0.2.50 from 192.0.2.100 eth0\nSent 1 probes (1 broadcast(s))\nReceived 0 response(s)\n", nil},
		{"garbage", "reply from x [zz:zz]\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseArping(tc.out); !slices.Equal(got, tc.want) {
				t.Errorf("ParseArping = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseWriteLogAndJudge(t *testing.T) {
	for _, tc := range []struct {
		name      string
		log       string
		acked     []int64
		records   int
		tokens    []int64
		backwards int
		lost      []int64
	}{
		{name: "clean handover", log: "1 a 10\n2 a 10\n3 d 40\n", acked: []int64{1, 2, 3},
			records: 3, tokens: []int64{10, 40}, lost: []int64{}},
		{name: "torn last line skipped", log: "1 a 10\n2 a 10\n3 a", acked: []int64{1, 2},
			records: 2, tokens: []int64{10}, lost: []int64{}},
		{name: "acknowledged write missing", log: "1 a 10\n3 d 40\n", acked: []int64{1, 2, 3},
			records: 2, tokens: []int64{10, 40}, lost: []int64{2}},
		{name: "fenced node's write after the new holder's", log: "1 a 10\n2 d 40\n3 a 10\n4 d 40\n", acked: []int64{1, 2, 4},
			records: 4, tokens: []int64{10, 40, 10, 40}, backwards: 1, lost: []int64{}},
		{name: "malformed lines", log: "x a 10\n1 a y\n\n1 2 3 4\n5 b 7\n", acked: nil,
			records: 1, tokens: []int64{7}, lost: []int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Judge(ParseWriteLog(tc.log), tc.acked, 0)
			if e.Records != tc.records || !slices.Equal(e.Tokens, tc.tokens) || e.Backwards != tc.backwards || !slices.Equal(e.Lost, tc.lost) {
				t.Errorf("Judge = records %d tokens %v backwards %d lost %v; want %d %v %d %v",
					e.Records, e.Tokens, e.Backwards, e.Lost, tc.records, tc.tokens, tc.backwards, tc.lost)
			}
		})
	}
}

func TestWindows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []lab.Sample {
		var s []lab.Sample
		for _, m := range ms {
			end := t0.Add(time.Duration(m) * time.Millisecond)
			s = append(s, lab.Sample{Start: end.Add(-5 * time.Millisecond), End: end, OK: m >= 0})
		}
		return s
	}
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		name    string
		samples []lab.Sample
		to      int
		want    []time.Duration
	}{
		{"steady", at(20, 40, 60, 80, 100), 100, nil},
		{"one outage", at(20, 40, 1540, 1560), 1560, ms(1500)},
		{"outage at the end", at(20, 40), 600, ms(560)},
		{"outage at the start", at(300, 320), 320, ms(300)},
		{"nothing answered", nil, 1000, ms(1000)},
		{"failures do not count", append(at(20, 900), lab.Sample{End: t0.Add(400 * time.Millisecond)}), 900, ms(880)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Windows(tc.samples, t0, t0.Add(time.Duration(tc.to)*time.Millisecond), gapMin)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Windows = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {50, 3}, {90, 5}, {100, 5}} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("Percentile of nothing should be 0")
	}
}

func TestScenarioNamesAndOptions(t *testing.T) {
	for _, s := range Scenarios() {
		if Find(s.Name) != s || s.Fault == "" || s.Promise == "" || len(s.Variants()) == 0 {
			t.Errorf("scenario %q incomplete", s.Name)
		}
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no binary", Options{Scenario: "kill"}, "binary"},
		{"unknown scenario", Options{Binary: "x", Scenario: "meteor"}, `scenario "meteor"`},
		{"negative duration", Options{Binary: "x", Scenario: "all", Duration: -time.Second}, "duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.defaults()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("defaults() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// FuzzParseWriteLog: any bytes parse without panic, every record round-trips through
// its text form, and judging never counts more than the records.
func FuzzParseWriteLog(f *testing.F) {
	for _, s := range []string{"1 a 10\n2 d 40\n", "3 a", "x y z\n", "9223372036854775807 n -1\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		recs := ParseWriteLog(text)
		for _, r := range recs {
			again := ParseWriteLog(strconv.FormatInt(r.Seq, 10) + " " + r.Node + " " + strconv.FormatInt(r.Token, 10))
			if len(again) != 1 || again[0] != r {
				t.Fatalf("record %+v does not round-trip: %+v", r, again)
			}
		}
		if e := Judge(recs, nil, 0); e.Backwards >= max(len(recs), 1) || e.Records != len(recs) {
			t.Fatalf("Judge counts %+v for %d records", e, len(recs))
		}
	})
}
