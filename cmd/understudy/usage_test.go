package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
	"github.com/understudy-ha/understudy/takeover"
)

// runCLI runs one invocation in-process, bounded, and returns its output and exit code.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, &out, &errb)
	return out.String(), errb.String(), code
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// closedEndpoint is an etcd endpoint nothing listens on: a case that reached etcd would
// fail differently (exit 1, "unreachable").
const closedEndpoint = "http://127.0.0.1:1"

// usageCase is one malformed invocation and what it must print.
type usageCase struct {
	name     string
	args     []string
	wantErr  []string // substrings of stderr
	wantHelp bool     // "Run '... --help' for usage." hint
	code     int      // 0: exitUsage
}

// usageCases is the table of malformed invocations: every command tree with an unknown
// flag, a missing or extra argument, and a bad value that must be named. The etcd
// endpoint, where one is given, is closedEndpoint.
func usageCases(t *testing.T) []usageCase {
	invalidSpec := writeFile(t, "bad.yaml", `roles:
  - name: Web_Server
    vip: {address: "10.0.0.300/24", interface: eth0}
  - name: db
`)
	unknownField := writeFile(t, "unknown.yaml", `roles:
  - name: db
    colour: blue
`)
	pem := writeFile(t, "x.pem", "not checked before the pair is complete\n")
	noEtcd := []string{"--etcd-endpoints", closedEndpoint}
	agent := func(args ...string) []string {
		return append([]string{"agent", "--node", "n1"}, append(args, noEtcd...)...)
	}
	return []usageCase{
		{"unknown flag", []string{"status", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"unknown shorthand", []string{"status", "-x"}, []string{"unknown shorthand flag: 'x'"}, true, 0},
		{"unknown command", []string{"stauts"}, []string{`unknown command "stauts"`, "status"}, true, 0},
		{"unknown node subcommand", []string{"node", "frob"}, []string{`unknown command "frob" for "understudy node"`}, true, 0},
		{"unknown role subcommand", []string{"role", "mvoe"}, []string{`unknown command "mvoe"`, "move"}, true, 0},
		{"node add without name", []string{"node", "add"}, []string{"accepts 1 arg(s), received 0"}, true, 0},
		{"node add two names", []string{"node", "add", "a", "b"}, []string{"accepts 1 arg(s), received 2"}, true, 0},
		{"node add bad name", append([]string{"node", "add", "a/b"}, noEtcd...), []string{`node name "a/b"`}, true, 0},
		{"node drain without name", []string{"node", "drain"}, []string{"accepts 1 arg(s)"}, true, 0},
		{"node remove without name", []string{"node", "remove"}, []string{"accepts 1 arg(s), received 0"}, true, 0},
		{"node remove bad name", append([]string{"node", "remove", "Bad!"}, noEtcd...), []string{`node name "Bad!"`}, true, 0},
		{"node cordon two names", []string{"node", "cordon", "a", "b"}, []string{"accepts 1 arg(s), received 2"}, true, 0},
		{"node uncordon without name", []string{"node", "uncordon"}, []string{"accepts 1 arg(s), received 0"}, true, 0},
		{"node qualify without name", []string{"node", "qualify"}, []string{"accepts 1 arg(s), received 0"}, true, 0},
		{"status with args", []string{"status", "extra"}, []string{`unknown command "extra"`}, true, 0},
		{"status bad -o", append([]string{"status", "-o", "xml"}, noEtcd...), []string{`invalid -o value "xml": allowed table, json, yaml`}, true, 0},
		{"status bad watch", []string{"status", "--watch=maybe"}, []string{`invalid argument "maybe" for "-w, --watch"`}, true, 0},
		{"history bad -o", append([]string{"history", "-o", "yaml"}, noEtcd...), []string{`invalid -o value "yaml": allowed table, json`}, true, 0},
		{"history bad limit", append([]string{"history", "--limit", "0"}, noEtcd...), []string{"invalid --limit 0"}, true, 0},
		{"history limit not a number", []string{"history", "--limit", "ten"}, []string{`invalid argument "ten"`}, true, 0},
		{"history bad role", append([]string{"history", "Web!"}, noEtcd...), []string{`role name "Web!"`}, true, 0},
		{"history two roles", append([]string{"history", "a", "b"}, noEtcd...), []string{"accepts at most 1 arg(s), received 2"}, true, 0},
		{"apply without file", append([]string{"apply"}, noEtcd...), []string{"missing -f FILE"}, true, 0},
		{"apply -f without value", []string{"apply", "-f"}, []string{"flag needs an argument: 'f' in -f"}, true, 0},
		{"apply missing file", append([]string{"apply", "-f", "/nonexistent/cluster.yaml"}, noEtcd...),
			[]string{"read cluster spec", "no such file"}, true, 0},
		{"apply invalid spec", append([]string{"apply", "-f", invalidSpec}, noEtcd...),
			[]string{"invalid cluster spec, nothing written:\n  ", "Web_Server", "10.0.0.300/24"}, true, 0},
		{"apply unknown field", append([]string{"apply", "-f", unknownField}, noEtcd...),
			[]string{"invalid cluster spec", "colour"}, true, 0},
		{"apply empty spec", append([]string{"apply", "-f", writeFile(t, "empty.yaml", "")}, noEtcd...),
			[]string{"empty"}, true, 0},
		{"apply force and if-revision", append([]string{"apply", "-f", invalidSpec, "--force", "--if-revision", "3"}, noEtcd...),
			[]string{"contradict"}, true, 0},
		{"role move without to", append([]string{"role", "move", "web"}, noEtcd...), []string{"missing --to NODE"}, true, 0},
		{"role move without role", []string{"role", "move", "--to", "b"}, []string{"accepts 1 arg(s), received 0"}, true, 0},
		{"role move two roles", []string{"role", "move", "a", "b", "--to", "c"}, []string{"accepts 1 arg(s), received 2"}, true, 0},
		{"role move bad role", append([]string{"role", "move", "Web!", "--to", "b"}, noEtcd...), []string{`role name "Web!"`}, true, 0},
		{"role move bad timeout", []string{"role", "move", "web", "--to", "b", "--timeout", "soon"}, []string{`invalid argument "soon"`}, true, 0},
		{"version with args", []string{"version", "now"}, []string{`unknown command "now"`}, true, 0},
		{"agent unknown flag", []string{"agent", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"agent with args", []string{"agent", "extra"}, []string{`unknown command "extra" for "understudy agent"`}, true, 0},
		{"agent bad ttl", []string{"agent", "--ttl", "soon"}, []string{`invalid argument "soon" for "--ttl"`}, true, 0},
		{"agent bad log format", agent("--log-format", "xml"), []string{`log_format: "xml" is not one of json, console`}, true, 0},
		{"agent health tls cert without key", agent("--health-tls-cert-file", pem),
			[]string{"health_tls_key_file: required with health_tls_cert_file"}, true, 0},
		{"agent health tls key without cert", agent("--health-tls-key-file", pem),
			[]string{"health_tls_cert_file: required with health_tls_key_file"}, true, 0},
		{"agent health client ca alone", agent("--health-tls-client-ca-file", pem),
			[]string{"health_tls_client_ca_file: needs health_tls_cert_file"}, true, 0},
		{"agent health tls missing file", agent("--health-tls-cert-file", "/nonexistent/h.pem", "--health-tls-key-file", pem),
			[]string{"health_tls_cert_file: stat /nonexistent/h.pem"}, true, 0},
		{"agent health tls not pem", agent("--health-tls-cert-file", pem, "--health-tls-key-file", pem),
			[]string{"health: invalid TLS configuration: health_tls_cert_file"}, false, 0},
		{"etcd-setup unknown flag", []string{"etcd-setup", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"etcd-setup with args", []string{"etcd-setup", "extra"}, []string{`unknown command "extra" for "understudy etcd-setup"`}, true, 0},
		{"fence unknown flag", []string{"fence", "keys", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"fence bad timeout", []string{"fence", "keys", "--timeout", "soon"}, []string{`invalid argument "soon" for "--timeout"`}, true, 0},
		{"fence preempt without victim", []string{"fence", "preempt"}, []string{"missing victim"}, true, 0},
		// The fence-agents API reserves exit 2 for "off" (status action): usage errors
		// exit 1 there, as every fence agent does.
		{"fence-agent unknown option", []string{"fence-agent", "--bogus"}, []string{`unknown option "--bogus"`}, false, exitFailure},
		{"lab unknown subcommand", []string{"lab", "frob"}, []string{`unknown command "frob" for "understudy lab"`}, true, 0},
		{"lab up unknown flag", []string{"lab", "up", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"lab down unknown flag", []string{"lab", "down", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"demo unknown flag", []string{"demo", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"bench unknown flag", []string{"bench", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"nemesis unknown flag", []string{"nemesis", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"demo-service unknown flag", []string{"demo-service", "--bogus"}, []string{"unknown flag: --bogus"}, true, 0},
		{"docs unknown subcommand", []string{"docs", "frob"}, []string{`unknown command "frob" for "understudy docs"`}, true, 0},
		{"docs man without dir", []string{"docs", "man"}, []string{"accepts 1 arg(s), received 0"}, true, 0},
	}
}

// TestUsageErrors: malformed invocations exit 2 with a clear message, before any etcd
// access (the endpoint points at a closed port, so reaching etcd would fail differently).
func TestUsageErrors(t *testing.T) {
	for _, tc := range usageCases(t) {
		t.Run(tc.name, func(t *testing.T) { checkUsageCase(t, tc, tc.args) })
	}
}

func checkUsageCase(t *testing.T, tc usageCase, args []string) {
	t.Helper()
	want := tc.code
	if want == 0 {
		want = exitUsage
	}
	stdout, stderr, code := runCLI(t, args...)
	if code != want {
		t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, want, stdout, stderr)
	}
	for _, w := range tc.wantErr {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if tc.wantHelp && !strings.Contains(stderr, "--help' for usage.") {
		t.Errorf("stderr lacks the --help hint:\n%s", stderr)
	}
	if n := strings.Count(stderr, "understudy: "); n != 1 {
		t.Errorf("error printed %d times, want once:\n%s", n, stderr)
	}
}

// TestUsageErrorsHaveNoSideEffects runs the whole table against a real etcd, which the
// environment names for every command (and which replaces the closed endpoint), with a
// fresh state directory: afterwards etcd is at the same revision with the same keys and
// leases, and the state directory is still empty. So validation, not an unreachable
// etcd, is what stopped each command.
func TestUsageErrorsHaveNoSideEffects(t *testing.T) {
	e := leasetest.Start(t)
	c := newCluster(t, e, "usage")
	c.mustCLI(exitOK, "apply", "-f", writeFile(t, "cluster.yaml", "roles:\n  - name: web\n"))
	c.mustCLI(exitOK, "node", "add", "node-a")
	stateDir := t.TempDir()
	endpoint := strings.Join(e.Endpoints(), ",")
	t.Setenv("UNDERSTUDY_CONFIG", "")
	t.Setenv("UNDERSTUDY_ETCD_ENDPOINTS", endpoint)
	t.Setenv("UNDERSTUDY_CLUSTER", "usage")
	t.Setenv("UNDERSTUDY_STATE_DIR", stateDir)
	cli := e.Client(t)
	before := etcdSnapshot(t, cli)
	for _, tc := range usageCases(t) {
		args := slices.Clone(tc.args)
		for i, a := range args {
			if a == closedEndpoint {
				args[i] = endpoint
			}
		}
		t.Run(tc.name, func(t *testing.T) { checkUsageCase(t, tc, args) })
	}
	if after := etcdSnapshot(t, cli); after != before {
		t.Errorf("etcd changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if entries, err := os.ReadDir(stateDir); err != nil || len(entries) > 0 {
		t.Errorf("state dir: %v, %d entries", err, len(entries))
	}
}

// etcdSnapshot is every key with its revisions and value, the store's revision and the
// granted leases: any write or session shows as a difference.
func etcdSnapshot(t *testing.T, cli *clientv3.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d, %d leases\n", resp.Header.Revision, len(leases.Leases))
	for _, kv := range resp.Kvs {
		fmt.Fprintf(&b, "%s create=%d mod=%d lease=%d %q\n", kv.Key, kv.CreateRevision, kv.ModRevision, kv.Lease, kv.Value)
	}
	return b.String()
}

func TestHelpHasExamples(t *testing.T) {
	a := &app{}
	cmds := a.newRootCmd().Commands()
	for len(cmds) > 0 {
		c := cmds[0]
		cmds = append(cmds[1:], c.Commands()...)
		if c.Hidden || c.Name() == "help" || otherOwner[c.Root().Name()+" "+firstWord(c.CommandPath())] {
			continue
		}
		if !c.HasExample() {
			t.Errorf("%s has no Example", c.CommandPath())
		}
	}
}

// otherOwner lists command trees exempt from the Example rule (none: every command
// shows how it is used).
var otherOwner = map[string]bool{}

// firstWord returns the first subcommand of a command path: "understudy node add" -> "node".
func firstWord(path string) string {
	f := strings.Fields(path)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"status", "--help"}, {"node"}, {"role", "move", "-h"}, {"version"}} {
		stdout, stderr, code := runCLI(t, args...)
		if code != exitOK {
			t.Errorf("%v: exit %d, stderr %s", args, code, stderr)
		}
		if stdout == "" {
			t.Errorf("%v: printed nothing", args)
		}
	}
}

func TestVersion(t *testing.T) {
	stdout, _, code := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "understudy dev\ngo1.") {
		t.Errorf("version: exit %d, output %q", code, stdout)
	}
}

// TestEtcdUnreachable: an operator command fails (exit 1) within the dial timeout, taken
// from the environment like the agent's, instead of hanging.
func TestEtcdUnreachable(t *testing.T) {
	t.Setenv("UNDERSTUDY_ETCD_DIAL_TIMEOUT", "1s")
	start := time.Now()
	_, stderr, code := runCLI(t, "status", "--etcd-endpoints", "http://127.0.0.1:1")
	if code != exitFailure || !strings.Contains(stderr, "etcd at [http://127.0.0.1:1] unreachable (within 1s)") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %s", took)
	}
}

func TestWatchRedrawsInPlaceOnTTY(t *testing.T) {
	var out bytes.Buffer
	a := &app{stdout: &out}
	if err := a.drawWatch(true, formatTable, takeover.ClusterStatus{Cluster: "x", Rev: 9}, &lease.View{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "\x1b[H\x1b[2J") || !strings.Contains(out.String(), "revision 9") {
		t.Errorf("tty frame: %q", out.String())
	}
}
