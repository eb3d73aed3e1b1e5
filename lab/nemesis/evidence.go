package nemesis

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/lab"
)

// Windows are the gaps longer than min in [from, to] between successful client
// requests (by when their answers arrived), including from `from` to the first and
// from the last to `to`: the role's unavailability windows.
func Windows(samples []lab.Sample, from, to time.Time, min time.Duration) []time.Duration {
	var ends []time.Time
	for _, s := range samples {
		if s.OK && !s.End.Before(from) && !s.End.After(to) {
			ends = append(ends, s.End)
		}
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	var ws []time.Duration
	prev := from
	for _, t := range append(ends, to) {
		if d := t.Sub(prev); d > min {
			ws = append(ws, d)
		}
		prev = t
	}
	return ws
}

// macRe finds the MAC in an iputils arping reply line:
// "Unicast reply from 192.0.2.50 [02:00:00:01:00:0D]  0.6ms".
var macRe = regexp.MustCompile(`reply from \S+ \[([0-9A-Fa-f:]{17})\]`)

// ParseArping returns the distinct MACs (lower case, sorted) that answered in arping's
// output.
func ParseArping(out string) []string {
	var macs []string
	for _, m := range macRe.FindAllStringSubmatch(out, -1) {
		mac := strings.ToLower(m[1])
		if !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}
	slices.Sort(macs)
	return macs
}

// arpAnswers asks, from namespace ns, who has ip (one ARP request, answers gathered
// for a second) and returns the MACs that answered.
func arpAnswers(ctx context.Context, ns, ip string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "arping", "-w", "1", "-I", "eth0", ip).CombinedOutput()
	macs := ParseArping(string(out))
	// arping exits 1 when nobody answered: that is an answer too (none).
	if err != nil && len(macs) == 0 && !strings.Contains(string(out), "Received 0 response") {
		return nil, fmt.Errorf("nemesis: arping %s in %s: %w: %s", ip, ns, err, bytes.TrimSpace(out))
	}
	return macs, nil
}

// WriteRecord is one record of a demo service's write log: "seq node token".
type WriteRecord struct {
	Seq   int64
	Node  string
	Token int64
}

// ParseWriteLog reads the records of a write log; a torn or malformed line (a holder
// killed mid-write, never acknowledged) is skipped, as the service itself does.
func ParseWriteLog(text string) []WriteRecord {
	var recs []WriteRecord
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		seq, err1 := strconv.ParseInt(f[0], 10, 64)
		tok, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		recs = append(recs, WriteRecord{Seq: seq, Node: f[1], Token: tok})
	}
	return recs
}

// Judge compares a LUN's records with the writes the client saw acknowledged.
func Judge(recs []WriteRecord, acked []int64, failed int) *RoleEvidence {
	e := &RoleEvidence{Acked: len(acked), Failed: failed, Records: len(recs), Lost: []int64{}, Tokens: []int64{}}
	seqs := make([]int64, 0, len(recs))
	var high int64 // the highest token so far
	for i, r := range recs {
		seqs = append(seqs, r.Seq)
		if i > 0 && r.Token < high {
			e.Backwards++
		}
		if i == 0 || r.Token > high {
			high = r.Token
		}
		if len(e.Tokens) == 0 || e.Tokens[len(e.Tokens)-1] != r.Token {
			e.Tokens = append(e.Tokens, r.Token)
		}
	}
	e.Lost = append(e.Lost, lab.Lost(acked, seqs)...)
	return e
}

// readLUNLog reads /writes.log straight from a LUN's backing file, bypassing every
// node: a copy is checked with e2fsck (which replays the journal, as a mount would)
// and the file is read with debugfs.
func readLUNLog(ctx context.Context, image, tmp string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cp := filepath.Join(tmp, filepath.Base(image))
	defer os.Remove(cp)
	if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", image, cp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("nemesis: copy %s: %w: %s", image, err, bytes.TrimSpace(out))
	}
	// e2fsck exits 1 when it corrected something (a replayed journal); 4 and up are
	// uncorrected errors.
	if out, err := exec.CommandContext(ctx, "e2fsck", "-fy", cp).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() >= 4 {
			return "", fmt.Errorf("nemesis: e2fsck of a copy of %s: %w: %s", image, err, bytes.TrimSpace(out))
		}
	}
	out, err := exec.CommandContext(ctx, "debugfs", "-R", "cat /writes.log", cp).Output()
	if err != nil {
		return "", fmt.Errorf("nemesis: debugfs cat /writes.log on a copy of %s: %w", image, err)
	}
	return string(out), nil
}

// countConflicts counts, over the agents' logs, the I/Os the target refused with
// RESERVATION CONFLICT.
func countConflicts(paths []string) int {
	n := 0
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n += bytes.Count(b, []byte("rejects our I/O with RESERVATION CONFLICT"))
	}
	return n
}
