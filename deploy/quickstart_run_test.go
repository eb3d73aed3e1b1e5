package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
)

// qsRun is the machine the quickstart runs on: one etcd, one bin dir, the nodes' agents.
type qsRun struct {
	t        *testing.T
	ctx      context.Context
	repo     string // the module root: the doc's commands run there (./cmd/understudy, deploy/...)
	bin      string // stands for /usr/local/bin; first on PATH
	endpoint string // the test etcd's client URL
	spec     string // the test's copy of deploy/cluster.yaml
	webAddr  string // where the role's service listens
	env      []string
	exports  []string // export lines run so far: later commands see them, as in one shell
	nodes    []*qsNode
	shown    map[int]bool // status-output blocks checked, by line
}

// qsNode is one node's files and agent process.
type qsNode struct {
	name    string
	root    string // stands for the node's / in /etc/understudy and /var/lib/understudy
	health  string // its health_listen
	log     string // the agent's output
	command string // the agent's command line, as rewritten for this node
	cmd     *exec.Cmd
	done    chan struct{} // closed once the agent exited and was reaped
}

// newQSRun prepares the test's machine: etcd, a bin dir on PATH, the nodes' dirs and ports.
func newQSRun(t *testing.T, names []string) *qsRun {
	ctx, cancel := context.WithTimeout(context.Background(), qsTimeout)
	t.Cleanup(cancel)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &qsRun{t: t, ctx: ctx, repo: repo, bin: filepath.Join(dir, "bin"),
		endpoint: leasetest.Start(t).Endpoints()[0], shown: map[int]bool{}}
	r.spec, r.webAddr = qsWriteSpec(t, dir, qsRole)
	for _, kv := range os.Environ() { // the user's shell has no UNDERSTUDY_* of the test's
		if !strings.HasPrefix(kv, "UNDERSTUDY_") && !strings.HasPrefix(kv, "PATH=") {
			r.env = append(r.env, kv)
		}
	}
	r.env = append(r.env, "PATH="+r.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, name := range names {
		r.nodes = append(r.nodes, &qsNode{name: name, root: filepath.Join(dir, name),
			health: qsFreeAddr(t), log: filepath.Join(dir, name+".log")})
	}
	t.Cleanup(r.stopAll) // registered after leasetest's cleanup, so it runs first
	return r
}

func (r *qsRun) node(name string) *qsNode {
	i := slices.IndexFunc(r.nodes, func(n *qsNode) bool { return n.name == name })
	if i < 0 {
		r.t.Fatalf("no node %s", name)
	}
	return r.nodes[i]
}

var (
	qsEndpoint = regexp.MustCompile(`https?://[A-Za-z0-9.-]+:2379\b`)
	// qsSystemPath: an absolute path outside the test's temp dir that a command would use.
	qsSystemPath = regexp.MustCompile(`(^|[\s=:])/(etc|var|usr|opt|srv|run|lib)/\S*`)
)

// rewrite turns a doc command into the test's, for node n (nil: a command run once).
// own reports whether it names one of n's own files.
func (r *qsRun) rewrite(cmd string, n *qsNode) (line string, own bool) {
	line = strings.TrimPrefix(cmd, "sudo ")
	line = strings.ReplaceAll(line, "/usr/local/bin/", r.bin+"/")
	line = qsEndpoint.ReplaceAllString(line, r.endpoint)
	line = strings.ReplaceAll(line, "deploy/cluster.yaml", r.spec)
	if n != nil {
		for _, p := range []string{"/etc/understudy", "/var/lib/understudy"} {
			if strings.Contains(line, p) {
				line, own = strings.ReplaceAll(line, p, n.root+p), true
			}
		}
	}
	if m := qsSystemPath.FindString(qsWithoutComment(line)); m != "" {
		r.t.Fatalf("%q would use the machine's %s: teach deploy/quickstart_test.go to rewrite it", cmd, strings.TrimSpace(m))
	}
	return line, own
}

// configure makes the edits the install line's comment asks for (node, etcd.endpoints)
// and those three agents on one machine need (health_listen, state_dir).
func (r *qsRun) configure(n *qsNode) {
	path := filepath.Join(n.root, "etc", "understudy", "agent.yaml")
	text, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatalf("node %s: the each-node block installed no agent config: %v", n.name, err)
	}
	if !qsEndpoint.Match(text) {
		r.t.Fatalf("%s: no etcd endpoint URL to edit", path)
	}
	text = qsEndpoint.ReplaceAll(text, []byte(r.endpoint))
	for _, kv := range [][2]string{{"node", n.name}, {"health_listen", strconv.Quote(n.health)},
		{"state_dir", filepath.Join(n.root, "var", "lib", "understudy")}} {
		re := regexp.MustCompile(`(?m)^` + kv[0] + `:.*$`)
		if len(re.FindAll(text, -1)) != 1 {
			r.t.Fatalf("%s: want exactly one %q line to edit", path, kv[0]+":")
		}
		text = re.ReplaceAllLiteral(text, []byte(kv[0]+": "+kv[1]))
	}
	if err := os.WriteFile(path, text, 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// shell runs line in sh after the export lines so far, in the module root, bounded.
func (r *qsRun) shell(line string) (string, error) {
	ctx, cancel := context.WithTimeout(r.ctx, qsCommandTimeout)
	defer cancel()
	script := strings.Join(append(slices.Clone(r.exports), line), "\n")
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir, cmd.Env = r.repo, r.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sh runs line and fails the test if it fails.
func (r *qsRun) sh(line string) string {
	r.t.Logf("$ %s", line)
	out, err := r.shell(line)
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return out
}

// start runs the node's agent command in the background, output appended to its log.
func (r *qsRun) start(n *qsNode) {
	r.t.Logf("$ %s &   # on %s", n.command, n.name)
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	script := strings.Join(append(slices.Clone(r.exports), "exec "+n.command), "\n")
	cmd := exec.Command("sh", "-c", script) // exec: the pid is the agent's own
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = r.repo, r.env, f, f
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start %s: %v", n.command, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(done chan struct{}) { // reaps the agent; stop and kill wait for it
		_ = cmd.Wait()
		close(done)
	}(n.done)
}

// kill stops the node's agent hard, as `kill -9` does.
func (r *qsRun) kill(n *qsNode) {
	r.t.Logf("$ kill -9 %d   # %s's agent", n.cmd.Process.Pid, n.name)
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(qsStopTimeout):
		r.t.Fatalf("%s's agent survived SIGKILL for %s", n.name, qsStopTimeout)
	}
}

// stopAll stops every agent still running (SIGTERM, SIGKILL after qsStopTimeout) and
// shows their logs if the test failed.
func (r *qsRun) stopAll() {
	for _, n := range r.nodes {
		if n.cmd == nil {
			continue
		}
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(qsStopTimeout):
			r.t.Errorf("%s's agent did not stop within %s of SIGTERM; killing it", n.name, qsStopTimeout)
			_ = n.cmd.Process.Signal(syscall.SIGKILL)
			<-n.done
		}
	}
	if !r.t.Failed() {
		return
	}
	for _, n := range r.nodes {
		if b, err := os.ReadFile(n.log); err == nil {
			r.t.Logf("%s's agent log (tail):\n%s", n.name, qsTail(b, 40))
		}
	}
}

func qsTail(b []byte, lines int) string {
	ls := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return string(bytes.Join(ls[max(0, len(ls)-lines):], []byte("\n")))
}

// waitStatus polls `understudy status` until check accepts what it shows.
func (r *qsRun) waitStatus(check func(*statusTable) error) *statusTable {
	deadline := time.Now().Add(qsWaitTimeout)
	for {
		out, _ := r.shell("understudy status") // exit 3 (degraded) is a state too
		st, err := parseStatus(out)
		if err == nil {
			if err = check(st); err == nil {
				r.t.Logf("$ understudy status\n%s", out)
				return st
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("understudy status never showed what the quickstart promises within %s: %v\nlast output:\n%s", qsWaitTimeout, err, out)
		}
		select {
		case <-r.ctx.Done():
			r.t.Fatalf("test timeout: %v", r.ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (r *qsRun) get(url string) (int, string) {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	// No keep-alive: an idle connection's goroutines would outlive the test (goleak).
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil && !errors.Is(err, io.EOF) {
		r.t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// qsFreeAddr returns a 127.0.0.1 address that was free a moment ago.
func qsFreeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// qsPorts matches the loopback listen addresses of the example spec's services.
var qsPorts = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

// qsWriteSpec copies deploy/cluster.yaml to dir with free ports for its services (fixed
// ports could be taken on a shared machine), and returns the copy's path and the
// address the role's service listens on.
func qsWriteSpec(t *testing.T, dir, role string) (string, string) {
	text, err := os.ReadFile("cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	text = qsPorts.ReplaceAllFunc(text, func(addr []byte) []byte {
		if ports[string(addr)] == "" {
			ports[string(addr)] = qsFreeAddr(t)
		}
		return []byte(ports[string(addr)])
	})
	spec, err := lease.ParseSpec(text)
	if err != nil {
		t.Fatalf("deploy/cluster.yaml with free ports: %v", err)
	}
	r, ok := spec.Role(role)
	if !ok || r.Exec == nil {
		t.Fatalf("deploy/cluster.yaml: no role %s with an exec", role)
	}
	i := slices.Index(r.Exec.Command, "--listen")
	if i < 0 || i+1 == len(r.Exec.Command) {
		t.Fatalf("deploy/cluster.yaml: role %s's command %v has no --listen ADDRESS", role, r.Exec.Command)
	}
	path := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, r.Exec.Command[i+1]
}
