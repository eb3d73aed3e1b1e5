package fence

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// The cross-check runs libiscsi's conformance tool, iscsi-test-cu (Debian
// libiscsi-bin), against the same private tgtd the other tgtd tests use.
// It is a second opinion on the target, written by other people: when
// understudy's own tgtd tests and libiscsi agree on what tgtd does, the
// measured behaviour documented in docs/fencing.md is the target's, not an
// artefact of our initiator.
//
// Only the run itself failing (tool missing with UNDERSTUDY_REQUIRE_ALL=1,
// login refused, output that cannot be parsed) fails the test, and so does
// a failure of one of the cases understudy's fencing relies on
// (crosscheckCore). Every other failure is a fact about tgtd, logged in
// the table.

// crosscheckTool is the libiscsi conformance tool; tests may override it.
var crosscheckTool = "/usr/bin/iscsi-test-cu"

// crosscheckSuite selects the suites to run from `iscsi-test-cu --list`:
// persistent reservations (PERSISTENT RESERVE IN/OUT) and the SPC-2
// RESERVE(6) suite that the same grep finds. The Sanitize.*Reserved
// cases also match "reserv" but test SANITIZE, need --allow-sanitize and
// are left out.
var crosscheckSuite = regexp.MustCompile(`^SCSI\.(Prin[A-Za-z]+|Prout[A-Za-z]+|Reserve6)$`)

// crosscheckCore are the cases understudy's fencing depends on: READ
// KEYS (also truncated: Device grows its allocation length from the
// reported ADDITIONAL LENGTH), REGISTER, RESERVE, the access rules of
// type 5 (Write Exclusive - Registrants Only) and PREEMPT. They must pass
// when iscsi-test-cu has them.
var crosscheckCore = []string{
	"PrinReadKeys.Simple",
	"PrinReadKeys.Truncate",
	"ProutRegister.Simple",
	"ProutReserve.Simple",
	"ProutReserve.AccessWERO",
	"ProutPreempt.RemoveRegistration",
}

// crosscheckTimeout bounds the whole run (all suites).
const crosscheckTimeout = 120 * time.Second

// crossResult is one iscsi-test-cu test case.
type crossResult struct {
	Name    string // Suite.Test
	Verdict string // passed, skipped (CUnit counts a skip as passed), FAILED
	Note    string // first [FAILED]/[SKIPPED] message or failed assertion
}

// crossSummary is CUnit's "tests" row: Total, Ran, Passed, Failed.
type crossSummary struct{ Total, Ran, Passed, Failed int }

func TestCrosscheckLibiscsi(t *testing.T) {
	if _, err := os.Stat(crosscheckTool); err != nil {
		skipOrFailf(t, "%s not available (install Debian package libiscsi-bin): %v", crosscheckTool, err)
	}
	tg := tgtdtest.Start(t) // skips (or fails under UNDERSTUDY_REQUIRE_ALL=1) without tgtd
	ctx, cancel := context.WithTimeout(context.Background(), crosscheckTimeout)
	defer cancel()

	listed, err := runCrosscheckTool(ctx, t, "--list")
	if err != nil {
		t.Fatalf("iscsi-test-cu --list: %v\n%s", err, listed)
	}
	suites, cases := crosscheckSuites(listed)
	if len(suites) == 0 {
		t.Fatalf("iscsi-test-cu --list shows no persistent reservation suites:\n%s", listed)
	}
	url := tg.URL(1)
	var results []crossResult
	for _, s := range suites {
		// --dataloss: the PROUT and access tests write; the LU is a private temporary file.
		out, err := runCrosscheckTool(ctx, t, "--dataloss", "--test="+s,
			"--initiator-name=iqn.2026-11.dev.understudy:crosscheck-1",
			"--initiator-name-2=iqn.2026-11.dev.understudy:crosscheck-2", url)
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			t.Fatalf("iscsi-test-cu %s: %v\n%s", s, err, out)
		}
		rs, sum, perr := parseCrosscheck(out)
		if perr != nil {
			t.Fatalf("iscsi-test-cu %s (%v): %v\n%s\n%s", s, err, perr, out, tg.LogTail())
		}
		if err != nil {
			t.Logf("iscsi-test-cu %s exited with %v (summary %+v)", s, err, sum)
		}
		results = append(results, rs...)
	}
	t.Logf("libiscsi iscsi-test-cu against tgtd (%s):\n%s", url, crosscheckTable(results))
	checkCrosscheckCore(t, results, cases)
}

// skipOrFailf skips the test, or fails it when UNDERSTUDY_REQUIRE_ALL=1 (CI).
func skipOrFailf(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// runCrosscheckTool runs iscsi-test-cu in a temporary directory (CUnit may
// write report files into the working directory) and returns its combined
// output. WaitDelay bounds the wait for pipes after ctx kills the tool.
func runCrosscheckTool(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, crosscheckTool, args...)
	cmd.Dir = t.TempDir()
	cmd.WaitDelay = 5 * time.Second
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (bound %v)", ctx.Err(), crosscheckTimeout)
	}
	return out.String(), err
}

// crosscheckSuites returns the selected suites ("SCSI.ProutReserve") and
// every case the tool lists in them ("ProutReserve.AccessWERO").
func crosscheckSuites(list string) (suites []string, cases map[string]bool) {
	cases = map[string]bool{}
	for _, name := range strings.Fields(list) {
		if crosscheckSuite.MatchString(name) {
			suites = append(suites, name)
			continue
		}
		rest, ok := strings.CutPrefix(name, "SCSI.")
		if !ok {
			continue // the ALL.* family lists the same tests again
		}
		if suite, _, ok := strings.Cut(rest, "."); ok && crosscheckSuite.MatchString("SCSI."+suite) {
			cases[rest] = true
		}
	}
	return suites, cases
}

var (
	crossSuiteRe   = regexp.MustCompile(`^Suite: (\S+)`)
	crossTestRe    = regexp.MustCompile(`^\s+Test: (\S+) \.\.\.(.*)$`)
	crossSummaryRe = regexp.MustCompile(`^\s*tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+`)
	crossAssertRe  = regexp.MustCompile(`^\s+1\. (\S+:\d+\s+- .*)$`)
)

// parseCrosscheck reads CUnit's verbose console output. A test starts at
// "  Test: NAME ..."; CUnit's verdict is "passed" (possibly followed on the
// same line by later log text) or a line "FAILED"; libiscsi's own messages
// ("[FAILED] ...", "[SKIPPED] ...") come in between. The parsed counts must
// match CUnit's run summary, or the output is not understood.
func parseCrosscheck(out string) ([]crossResult, crossSummary, error) {
	var (
		res   []crossResult
		suite string
		sum   crossSummary
		found bool
	)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := crossSuiteRe.FindStringSubmatch(line); m != nil {
			suite = m[1]
			continue
		}
		if m := crossSummaryRe.FindStringSubmatch(line); m != nil {
			n := make([]int, 4)
			for i := range n {
				n[i], _ = strconv.Atoi(m[i+1])
			}
			sum, found = crossSummary{Total: n[0], Ran: n[1], Passed: n[2], Failed: n[3]}, true
			continue
		}
		body := line
		if m := crossTestRe.FindStringSubmatch(line); m != nil {
			res = append(res, crossResult{Name: suite + "." + m[1]})
			body = m[2]
		}
		if len(res) > 0 {
			res[len(res)-1].absorb(body)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, sum, err
	}
	return res, sum, checkCrossCounts(res, sum, found)
}

// absorb reads one line of a test's output.
func (r *crossResult) absorb(line string) {
	l := strings.TrimSpace(line)
	switch {
	case r.Verdict == "" && strings.HasPrefix(l, "passed"):
		r.Verdict = "passed"
		if r.Note != "" && strings.HasPrefix(r.Note, "[SKIPPED]") {
			r.Verdict = "skipped"
		}
		l = strings.TrimSpace(strings.TrimPrefix(l, "passed"))
	case r.Verdict == "" && l == "FAILED":
		r.Verdict = "FAILED"
		return
	}
	if i := strings.Index(l, "[FAILED]"); i >= 0 && r.Note == "" {
		r.Note = l[i:]
	} else if i := strings.Index(l, "[SKIPPED]"); i >= 0 && r.Note == "" {
		r.Note = l[i:]
	} else if m := crossAssertRe.FindStringSubmatch(line); m != nil && r.Note == "" {
		r.Note = "assertion " + m[1]
	}
}

func checkCrossCounts(res []crossResult, sum crossSummary, found bool) error {
	if !found {
		return errors.New("no CUnit run summary in the output")
	}
	passed := 0
	for _, r := range res {
		switch r.Verdict {
		case "passed", "skipped":
			passed++
		case "FAILED":
		default:
			return fmt.Errorf("no verdict for %s", r.Name)
		}
	}
	if len(res) != sum.Ran || passed != sum.Passed {
		return fmt.Errorf("parsed %d tests (%d passed), CUnit reports %d run (%d passed)", len(res), passed, sum.Ran, sum.Passed)
	}
	return nil
}

// crosscheckTable renders the results as a Markdown table (docs/fencing.md
// carries a copy). Core cases are marked with *.
func crosscheckTable(rs []crossResult) string {
	core := map[string]bool{}
	for _, c := range crosscheckCore {
		core[c] = true
	}
	var b strings.Builder
	b.WriteString("| test | result | libiscsi's message |\n|---|---|---|\n")
	for _, r := range rs {
		name := r.Name
		if core[name] {
			name += " *"
		}
		note := r.Note
		if len(note) > 120 {
			note = note[:117] + "..."
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, r.Verdict, strings.ReplaceAll(note, "|", `\|`))
	}
	return b.String()
}

// checkCrosscheckCore fails the test when a case fencing relies on did not
// pass (a skip counts as not passed: it means PROUT is not implemented).
func checkCrosscheckCore(t *testing.T, rs []crossResult, listed map[string]bool) {
	t.Helper()
	got := map[string]crossResult{}
	for _, r := range rs {
		got[r.Name] = r
	}
	for _, c := range crosscheckCore {
		r, ran := got[c]
		switch {
		case !listed[c] && !ran:
			t.Logf("core case %s: not in this iscsi-test-cu version", c)
		case !ran:
			t.Errorf("core case %s: listed but did not run", c)
		case r.Verdict != "passed":
			t.Errorf("core case %s: %s %s", c, r.Verdict, r.Note)
		}
	}
}

func TestCrosscheckParse(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    []crossResult
		wantErr bool
	}{
		{
			name: "pass and fail with messages",
			out: "Suite: ProutReserve\n  Test: Simple ...passed\n" +
				"  Test: OwnershipEA ...    [FAILED] PRIN command: failed with sense: UA(0x2a04)\nFAILED\n" +
				"    1. test_prout_reserve_ownership.c:84  - CU_ASSERT_EQUAL(0,ret)\n\n" +
				"Run Summary:    Type  Total    Ran Passed Failed Inactive\n" +
				"              suites      1      1    n/a      0        0\n" +
				"               tests      2      2      1      1        0\n",
			want: []crossResult{
				{"ProutReserve.Simple", "passed", ""},
				{"ProutReserve.OwnershipEA", "FAILED", "[FAILED] PRIN command: failed with sense: UA(0x2a04)"},
			},
		},
		{
			name: "skip, verdict on its own line, log after the verdict",
			out: "Suite: Reserve6\n  Test: TargetColdReset ...    [SKIPPED] Task Management function not implemented\n\npassed\n" +
				"  Test: Logout ...    Take out a RESERVE6\npassed\n" +
				"  Test: LUNReset ...passed    [FAILED] PRIN command: BUS_RESET(0x2900)\n\n" +
				"Run Summary:    Type  Total    Ran Passed Failed Inactive\n" +
				"               tests      3      3      3      0        0\n",
			want: []crossResult{
				{"Reserve6.TargetColdReset", "skipped", "[SKIPPED] Task Management function not implemented"},
				{"Reserve6.Logout", "passed", ""},
				{"Reserve6.LUNReset", "passed", "[FAILED] PRIN command: BUS_RESET(0x2900)"},
			},
		},
		{
			name: "assertion only",
			out: "Suite: PrinReadKeys\n  Test: Truncate ...--dataloss flag is not set in. Skipping PROUT\nFAILED\n" +
				"    1. test_prin_read_keys_truncate.c:46  - CU_ASSERT_EQUAL(ret,0)\n" +
				"               tests      1      1      0      1        0\n",
			want: []crossResult{{"PrinReadKeys.Truncate", "FAILED", "assertion test_prin_read_keys_truncate.c:46  - CU_ASSERT_EQUAL(ret,0)"}},
		},
		{name: "login failed, no summary", out: "Failed to login to target\n", wantErr: true},
		{
			name:    "counts disagree",
			out:     "Suite: X\n  Test: A ...passed\n               tests      2      2      2      0        0\n",
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := parseCrosscheck(tc.out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
