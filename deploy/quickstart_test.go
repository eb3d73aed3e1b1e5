package deploy

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Bounds of the quickstart test's waits.
const (
	qsTimeout        = 8 * time.Minute  // the whole test, go build included
	qsCommandTimeout = 5 * time.Minute  // one command of a block
	qsWaitTimeout    = 90 * time.Second // one state the quickstart promises
	qsStopTimeout    = 30 * time.Second // an agent's clean stop on SIGTERM
)

// The story section 2 tells in prose, with no block to extract: the holder of web is
// killed, the standby takes web over, the old holder comes back as a standby.
const (
	qsRole    = "web"
	qsVictim  = "node-a"
	qsStandby = "node-c"
)

// qsProse lists the commands section 2 names in its prose (code spans starting with
// "understudy", "kill" or "http") and what the test does for each. A command the test
// does not know fails the test, and so does one the doc no longer names.
var qsProse = map[string]string{
	"kill -9":                      "SIGKILL to " + qsVictim + "'s agent",
	"understudy status --watch":    "`understudy status` polled until " + qsStandby + " holds " + qsRole,
	"understudy history web":       "run after the failover: lists the takeover and its steps",
	"http://<node>:7480/roles/web": "GET on every node's health endpoint: 200 on the holder only",
}

// TestQuickstart runs the code blocks of section 2 of docs/quickstart.md ("A cluster
// beside your etcd") as a user would, in order, against an embedded etcd, with the
// nodes node-a, node-b and node-c as agent processes on this machine. Each block carries
// an annotation saying how it runs (see runBlock); a block without one fails the test.
// Rewritten, because a test must not touch the machine: /usr/local/bin, /etc/understudy
// and /var/lib/understudy go to a temp dir (per node for the last two), the etcd URL is
// the test etcd's, sudo is dropped, the example spec's service ports and the agents'
// health ports are free loopback ports. Then the prose's promises: kill -9 the holder of
// web, the standby takes it over (status, history, health endpoints, the service itself),
// the old holder rejoins as a standby and does not take web back.
func TestQuickstart(t *testing.T) {
	qsPrereqs(t)
	sec := parseQuickstart(t, filepath.Join("..", "docs", "quickstart.md"))
	r := newQSRun(t, sec.nodes)
	for i, b := range sec.blocks {
		r.runBlock(b, sec.outputAfter(i))
	}
	for _, b := range sec.blocks {
		if b.kind == "status-output" && !r.shown[b.line] {
			t.Fatalf("docs/quickstart.md:%d: status-output block after no `understudy status`", b.line)
		}
	}
	r.failover()
}

func qsPrereqs(t *testing.T) {
	missing := ""
	if runtime.GOOS != "linux" {
		missing = "Linux (the exec resource)"
	}
	for _, tool := range []string{"go", "sh", "install"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = tool
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
		t.Fatalf("quickstart needs %s", missing)
	}
	t.Skipf("quickstart needs %s", missing)
}

// qsBlock is one fenced code block of the section.
type qsBlock struct {
	line  int      // of the opening fence, 1-based
	kind  string   // from the <!-- test: KIND --> line before it
	lines []string // content
}

// qsSection is what the test takes from section 2.
type qsSection struct {
	nodes  []string // the code spans of the "On every node (names ...)" line
	blocks []qsBlock
}

// outputAfter returns the status-output block that follows block i, before the next
// block that runs something; nil if none.
func (s qsSection) outputAfter(i int) *qsBlock {
	for j := i + 1; j < len(s.blocks); j++ {
		switch s.blocks[j].kind {
		case "status-output":
			return &s.blocks[j]
		case "run", "each-node", "each-node-background":
			return nil
		}
	}
	return nil
}

var (
	qsAnnotation = regexp.MustCompile(`^<!-- test: ([a-z-]+) -->$`)
	qsCodeSpan   = regexp.MustCompile("`([^`]+)`")
	qsKinds      = []string{"each-node", "each-node-background", "run", "status-output"}
)

func parseQuickstart(t *testing.T, path string) qsSection {
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	start := slices.IndexFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "## ") && strings.Contains(l, "beside your etcd")
	})
	if start < 0 {
		t.Fatalf("%s: no \"## ... beside your etcd\" section", path)
	}
	var s qsSection
	var prose []string
	kind := ""
	for i := start + 1; i < len(lines) && !strings.HasPrefix(lines[i], "## "); i++ {
		l := lines[i]
		switch m := qsAnnotation.FindStringSubmatch(strings.TrimSpace(l)); {
		case m != nil:
			kind = m[1]
		case strings.HasPrefix(l, "```"):
			b := qsBlock{line: i + 1, kind: kind}
			for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
				b.lines = append(b.lines, lines[i])
			}
			if i == len(lines) {
				t.Fatalf("%s:%d: code block never closed", path, b.line)
			}
			qsCheckKind(t, path, b)
			s.blocks, kind = append(s.blocks, b), ""
		case strings.TrimSpace(l) != "":
			kind = "" // an annotation belongs to the block right after it
			spans := qsCodeSpan.FindAllStringSubmatch(l, -1)
			for _, m := range spans {
				prose = append(prose, m[1])
			}
			if strings.HasPrefix(l, "On every node") {
				for _, m := range spans {
					s.nodes = append(s.nodes, m[1])
				}
			}
		}
	}
	qsCheckProse(t, path, prose)
	if len(s.nodes) < 2 || !slices.Contains(s.nodes, qsVictim) || !slices.Contains(s.nodes, qsStandby) {
		t.Fatalf("%s: the \"On every node (names ...)\" line names %v; the test's story needs %s and %s", path, s.nodes, qsVictim, qsStandby)
	}
	return s
}

func qsCheckKind(t *testing.T, path string, b qsBlock) {
	t.Helper()
	if b.kind == "" {
		t.Fatalf("%s:%d: code block without a <!-- test: KIND --> line before it (KIND one of %v): "+
			"every block of this section is run by deploy/quickstart_test.go, which must know how", path, b.line, qsKinds)
	}
	if !slices.Contains(qsKinds, b.kind) {
		t.Fatalf("%s:%d: unknown block kind %q (want one of %v): teach deploy/quickstart_test.go to run it", path, b.line, b.kind, qsKinds)
	}
}

func qsCheckProse(t *testing.T, path string, spans []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range spans {
		if !strings.HasPrefix(s, "understudy ") && !strings.HasPrefix(s, "kill") && !strings.HasPrefix(s, "http") {
			continue
		}
		if _, ok := qsProse[s]; !ok {
			t.Errorf("%s: section 2 names the command `%s`, which deploy/quickstart_test.go does not run: teach it (qsProse)", path, s)
		}
		seen[s] = true
	}
	for cmd, what := range qsProse {
		if !seen[cmd] {
			t.Errorf("%s: section 2 no longer names `%s` (the test does %s): update deploy/quickstart_test.go", path, cmd, what)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// runBlock runs one block according to its kind:
//   - each-node: every command on every node (a command that names no node's own file
//     runs once: the test's nodes share one machine), then each node's installed
//     agent.yaml gets what its comment says to edit (node, etcd endpoints), plus what
//     must differ on one machine (health port, state dir);
//   - each-node-background: its one command starts on every node and runs until the
//     end of the test (output in the node's log, shown if the test fails);
//   - run: every command once; `export` lines also apply to later commands; `understudy
//     status` (also with --watch) is polled until it shows the state of the
//     status-output block after it (or, without one, until every role is held);
//   - status-output: what the status before it must show.
func (r *qsRun) runBlock(b qsBlock, output *qsBlock) {
	r.t.Logf("docs/quickstart.md:%d: %s block", b.line, b.kind)
	switch b.kind {
	case "each-node":
		r.eachNode(b)
	case "each-node-background":
		r.background(b)
	case "run":
		r.run(b, output)
	}
}

func qsCommands(b qsBlock) []string {
	var out []string
	for _, l := range b.lines {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// qsWithoutComment cuts a trailing shell comment, for matching a command.
func qsWithoutComment(cmd string) string {
	if i := strings.Index(cmd, " #"); i >= 0 {
		cmd = cmd[:i]
	}
	return strings.TrimSpace(cmd)
}

func (r *qsRun) eachNode(b qsBlock) {
	for _, c := range qsCommands(b) {
		for i, n := range r.nodes {
			line, own := r.rewrite(c, n)
			if own || i == 0 {
				r.sh(line)
			}
		}
	}
	for _, n := range r.nodes {
		r.configure(n)
	}
}

func (r *qsRun) background(b qsBlock) {
	cmds := qsCommands(b)
	if len(cmds) != 1 {
		r.t.Fatalf("docs/quickstart.md:%d: a background block holds exactly one command, not %d", b.line, len(cmds))
	}
	for _, n := range r.nodes {
		line, own := r.rewrite(cmds[0], n)
		if !own {
			r.t.Fatalf("docs/quickstart.md:%d: %q names no node's own file: the test cannot tell the nodes' commands apart", b.line, cmds[0])
		}
		n.command = line
		r.start(n)
	}
}

var qsStatusCmd = regexp.MustCompile(`^understudy status( --watch| -w)?$`)

func (r *qsRun) run(b qsBlock, output *qsBlock) {
	for _, c := range qsCommands(b) {
		line, _ := r.rewrite(c, nil)
		switch {
		case qsStatusCmd.MatchString(qsWithoutComment(line)):
			if output == nil {
				r.waitStatus(qsAllHeld)
				continue
			}
			want, err := parseStatus(strings.Join(output.lines, "\n"))
			if err != nil {
				r.t.Fatalf("docs/quickstart.md:%d: status-output block: %v", output.line, err)
			}
			r.waitStatus(want.matches)
			r.shown[output.line] = true
		case strings.HasPrefix(line, "export "):
			r.sh(line)
			r.exports = append(r.exports, line)
		default:
			r.sh(line)
		}
	}
}

// failover plays the prose after the blocks: kill -9 the holder's agent, the standby
// takes the role over; the old holder comes back as a standby and leaves it there.
func (r *qsRun) failover() {
	victim, standby := r.node(qsVictim), r.node(qsStandby)
	r.kill(victim)
	r.waitStatus(func(st *statusTable) error {
		return st.has(statusCell{"role", qsRole, "HOLDER", qsStandby}, statusCell{"node", qsVictim, "STATE", "down"})
	})
	hist := r.sh("understudy history " + qsRole)
	if !qsTookOver(hist, qsRole, qsStandby, qsVictim) {
		r.t.Fatalf("understudy history %s shows no takeover by %s from %s with its steps:\n%s", qsRole, qsStandby, qsVictim, hist)
	}
	if got := r.serviceNode(); got != qsStandby {
		r.t.Fatalf("role %s's service on %s answers from node %q, want %s", qsRole, r.webAddr, got, qsStandby)
	}
	for _, n := range r.nodes {
		if n != victim {
			r.checkHealth(n, n == standby)
		}
	}
	r.start(victim)
	r.waitStatus(func(st *statusTable) error {
		return st.has(statusCell{"node", qsVictim, "STATE", "standby"}, statusCell{"node", qsVictim, "QUALIFIED", "passed"},
			statusCell{"role", qsRole, "HOLDER", qsStandby}) // failback: false
	})
	r.checkHealth(victim, false)
}

// qsTookOver finds the history row "<date> <time> ROLE takeover NODE FROM TOKEN STEPS..."
// whose steps include the exec step.
func qsTookOver(history, role, node, from string) bool {
	for _, l := range strings.Split(history, "\n") {
		f := strings.Fields(l)
		if len(f) > 7 && f[2] == role && f[3] == "takeover" && f[4] == node && f[5] == from && strings.Contains(l, "exec") {
			return true
		}
	}
	return false
}

// serviceNode asks the web role's demo-service which node runs it.
func (r *qsRun) serviceNode() string {
	var reply struct {
		Node string `json:"node"`
	}
	code, body := r.get("http://" + r.webAddr + "/")
	if code != http.StatusOK || json.Unmarshal([]byte(body), &reply) != nil {
		r.t.Fatalf("GET http://%s/: %d %s", r.webAddr, code, body)
	}
	return reply.Node
}

// checkHealth: /roles/<role> answers 200 on the holder, 503 everywhere else.
func (r *qsRun) checkHealth(n *qsNode, holder bool) {
	want := http.StatusServiceUnavailable
	if holder {
		want = http.StatusOK
	}
	url := "http://" + n.health + "/roles/" + qsRole
	if code, body := r.get(url); code != want {
		r.t.Fatalf("%s (%s): %d %q, want %d", url, n.name, code, body, want)
	}
}
