package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"

	"github.com/understudy-ha/understudy/fence/tgtdtest"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
	"github.com/understudy-ha/understudy/takeover"
)

// Marker secrets: distinct, and unlikely to occur by chance in any output.
const (
	markEtcdEnv  = "etcdPW-5c2f8a71"  // the etcd password that works (UNDERSTUDY_ETCD_PASSWORD)
	markEtcdFile = "filePW-0b9e3d44"  // etcd.password in the file, overridden by the environment
	markCHAP     = "chapSECRET4d1e9b" // CHAP secret in the iscsi:// URLs of the spec
	markFence    = "fencePW-a61c7e20" // fence agent password (args.passwd)
	secCluster   = "sec"
)

var markers = []string{markEtcdEnv, markEtcdFile, markCHAP, markFence}

// secretsWorld is one agent of cluster "sec" on an mTLS etcd with auth, logged in as the
// cluster's etcd user with a password, serving its health endpoint over mutual TLS.
type secretsWorld struct {
	e          *leasetest.TLSEtcd
	admin      *clientv3.Client
	agentCfg   string // the agent's config file; status uses it too
	adminCfg   string // root by certificate, cluster sec: the other commands
	specFile   string
	healthURL  string
	health     *http.Client
	echoFile   string // what the fake fence agent got on stdin
	logJSON    syncBuffer
	logConsole syncBuffer
	outputs    map[string]string // every collected output by origin
}

// TestNoSecretsAnywhere plants an etcd password, a CHAP secret and a fence-agent password,
// runs a real agent that joins, qualifies (opening CHAP sessions when tgtd is present)
// and attempts a takeover that fails in the fence agent, and then looks for the markers
// in everything a user or an attacker with read access could see: the agent's logs
// (JSON and console), the health endpoint's routes, status/history/apply output, error
// messages, and every key etcd holds for the cluster except the applied spec itself.
func TestNoSecretsAnywhere(t *testing.T) {
	w := newSecretsWorld(t)
	// Each phase has its own bound: password logins cost a bcrypt hash each, which is
	// slow under -race on a busy machine.
	stop := w.runAgent(t)
	w.waitFailedFenceTakeover(t)
	w.collectHealth(t)
	w.collectCLI(t)
	w.collectEtcd(t)
	stop()
	w.outputs["agent log (json)"] = w.logJSON.String()
	w.outputs["agent log (console)"] = w.logConsole.String()

	// The secrets really were used, so their absence below means something.
	if echo, err := os.ReadFile(w.echoFile); err != nil || !strings.Contains(string(echo), "passwd="+markFence) {
		t.Errorf("the fence agent never received its password (stdin %q, %v)", echo, err)
	}
	if !strings.Contains(w.outputs["history -o json"], "***") {
		t.Errorf("no redacted fence-agent output in the history:\n%s", w.outputs["history -o json"])
	}
	if os.Getenv("SECRETS_DEBUG") != "" {
		t.Logf("etcd:\n%s\nlog:\n%s", w.outputs["etcd keys but spec"], w.outputs["agent log (console)"])
	}
	for origin, text := range w.outputs {
		if text == "" {
			t.Errorf("%s: empty: nothing was checked", origin)
		}
		for _, m := range markers {
			if i := strings.Index(text, m); i >= 0 {
				t.Errorf("%s shows the secret %q: ...%s...", origin, m, text[max(0, i-200):min(len(text), i+len(m)+50)])
			}
		}
	}
}

func newSecretsWorld(t *testing.T) *secretsWorld {
	t.Helper()
	w := &secretsWorld{e: leasetest.StartTLS(t), outputs: map[string]string{}}
	// Runs after everything else has stopped and before etcd does (cleanups run last
	// registered first).
	t.Cleanup(func() { waitPasswordChecks(t) })
	w.admin = w.e.Client(t)
	dir := t.TempDir()
	user := "understudy-" + secCluster
	admin := adminConfig(t, w.e)
	adminText, err := os.ReadFile(admin)
	if err != nil {
		t.Fatal(err)
	}
	w.adminCfg = writeFile(t, "admin-sec.yaml", string(adminText)+"  dial_timeout: 20s\ncluster: "+secCluster+"\n")
	out := mustSetup(t, "etcd-setup", "--config", admin, "--cluster", secCluster, "--enable-auth",
		"--password-file", writeFile(t, "pw", markEtcdEnv+"\n"))
	w.outputs["etcd-setup"] = out
	cheapPasswordHash(t, w.admin, user, markEtcdEnv)

	// The health endpoint reuses the etcd server's certificate (valid for 127.0.0.1, in
	// the CA's directory) and requires client certificates from the same CA.
	pemDir := filepath.Dir(w.e.CAFile())
	port := freePort(t)
	cert, key := w.e.ClientCert(t, user)
	w.agentCfg = writeFile(t, "agent.yaml", fmt.Sprintf(`node: n1
cluster: %s
etcd:
  endpoints: [%s]
  ca_cert: %s
  cert: %s
  key: %s
  username: %s
  password: %s
  dial_timeout: 20s
ttl: 2s
health_listen: 127.0.0.1:%d
health_tls_cert_file: %s
health_tls_key_file: %s
health_tls_client_ca_file: %s
state_dir: %s
log_level: debug
`, secCluster, w.e.Endpoints()[0], w.e.CAFile(), cert, key, user, markEtcdFile, port,
		filepath.Join(pemDir, "etcd-server.pem"), filepath.Join(pemDir, "etcd-server-key.pem"), w.e.CAFile(), dir))
	t.Setenv("UNDERSTUDY_CONFIG", "")
	// Set only while the agent's configuration is loaded and status runs (withPassword):
	// the root-by-certificate commands must not see it.
	t.Setenv("UNDERSTUDY_ETCD_PASSWORD", "")
	w.healthURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	w.health = healthClient(t, w.e)

	w.echoFile = filepath.Join(dir, "fence-stdin")
	agent := filepath.Join(dir, "fence_echo")
	// Like a real agent failing to log in: it prints its options and exits 1.
	script := "#!/bin/sh\ntee " + w.echoFile + "\necho login failed >&2\nexit 1\n"
	if err := os.WriteFile(agent, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	w.specFile = writeFile(t, "cluster.yaml", secretSpec(lunURL(t), agent, filepath.Join(dir, "mnt")))
	w.outputs["apply"] = mustCLIOut(t, exitOK, "apply", "-f", w.specFile, "--config", w.adminCfg)

	// The role "power" was last held by a node that vanished uncleanly: whoever claims it
	// must fence that node first, through the fence agent.
	last, _ := json.Marshal(lease.LastHolder{Node: "ghost", NodeID: 99, Token: 1, Time: time.Now()})
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.admin.Put(pctx, lease.Prefix(secCluster)+"roles/power/last", string(last)); err != nil {
		t.Fatal(err)
	}
	return w
}

// lunURL is an iscsi:// URL with the CHAP secret: of a private tgtd requiring that CHAP
// account when tgtd can run here (so sessions really log in with it), else of a closed
// port (the secret is then only parsed, and the connection errors are checked).
func lunURL(t *testing.T) string {
	if _, err := exec.LookPath(tgtdtest.TgtdPath); err != nil || os.Geteuid() != 0 {
		t.Logf("no tgtd or not root: the CHAP secret is only parsed (%v)", err)
		return "iscsi://chap-user:" + markCHAP + "@127.0.0.1:1/iqn.2026-11.dev.understudy:none/1"
	}
	tg := tgtdtest.Start(t, tgtdtest.WithCHAP("chap-user", markCHAP))
	return fmt.Sprintf("iscsi://chap-user:%s@%s/%s/1", markCHAP, tg.Addr(), tg.IQN())
}

func secretSpec(url, agent, mnt string) string {
	return fmt.Sprintf(`roles:
  - name: lun
    fence:
      method: scsi
      devices:
        - [%q]
    storage:
      device: %q
      fstype: ext4
      mountpoint: %s
  - name: power
    fence:
      method: agent
      agent:
        path: %s
        args: {login: admin, passwd: %s, ipaddr: 127.0.0.1}
    exec:
      command: [sleep, "3600"]
`, url, url, mnt, agent, markFence)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func healthClient(t *testing.T, e *leasetest.TLSEtcd) *http.Client {
	t.Helper()
	cert, key := e.ClientCert(t, "monitor")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(e.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// runAgent runs the agent the way `understudy agent` does (runAgent, with the health
// endpoint), logging at debug level to a JSON and a console encoder at once. The returned
// stop cancels it and waits.
func (w *secretsWorld) runAgent(t *testing.T) (stop func()) {
	t.Helper()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	takeover.BindFlags(fs)
	if err := fs.Parse([]string{"--config", w.agentCfg}); err != nil {
		t.Fatal(err)
	}
	var cfg takeover.Config
	var err error
	withPassword(t, func() { cfg, err = takeover.LoadConfig(fs) })
	if err != nil {
		t.Fatal(err)
	}
	jsonEnc := zap.NewProductionEncoderConfig()
	jsonEnc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewTee(
		zapcore.NewCore(zapcore.NewJSONEncoder(jsonEnc), zapcore.AddSync(&w.logJSON), zap.DebugLevel),
		zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(&w.logConsole), zap.DebugLevel))
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAgent(actx, cfg, zap.New(core)) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
				w.outputs["agent error"] = err.Error()
			}
		case <-time.After(30 * time.Second):
			t.Error("agent did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFailedFenceTakeover waits until the agent tried to take "power" and failed in the
// fence step (the fence agent exits 1), with the event in the history.
func (w *secretsWorld) waitFailedFenceTakeover(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st := lease.NewStore(w.admin, lease.Prefix(secCluster), nil)
	for {
		evs, err := st.Events(ctx, "power", 0)
		for _, ev := range evs {
			if ev.Kind == takeover.EventTakeoverFailed {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no failed takeover of power (events %+v, err %v)\nlog:\n%s", evs, err, w.logConsole.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *secretsWorld) collectHealth(t *testing.T) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz", "/status", "/metrics", "/ui/state.json", "/roles/power", "/roles/lun"} {
		resp, err := w.health.Get(w.healthURL + path)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		w.outputs["health "+path] = string(b)
	}
}

// collectCLI runs the operator commands with the agent's configuration, as an operator
// on the node would; apply shows a diff in which only a secret changed, and a spec whose
// validation error quotes a URL with the CHAP secret.
func (w *secretsWorld) collectCLI(t *testing.T) {
	t.Helper()
	// status logs in as the agent does (password); the rest as root by certificate, which
	// prints the same and spares a bcrypt login per command.
	c, admin := []string{"--config", w.agentCfg}, []string{"--config", w.adminCfg}
	for _, args := range [][]string{
		{"status"}, {"status", "-o", "json"}, {"status", "-o", "yaml"},
		{"history"}, {"history", "-o", "json"}, {"history", "power"},
	} {
		cfg := admin
		if args[0] == "status" {
			cfg = c
		}
		var stdout, stderr string
		var code int
		run := func() { stdout, stderr, code = runCLI(t, append(args, cfg...)...) }
		if args[0] == "status" {
			withPassword(t, run)
		} else {
			run()
		}
		if code != exitOK && code != exitDegraded {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
		w.outputs[strings.Join(args, " ")] = stdout + stderr
	}
	spec, err := os.ReadFile(w.specFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := writeFile(t, "changed.yaml", strings.ReplaceAll(string(spec), markFence, markFence+"-new"))
	w.outputs["apply --dry-run (secret changed)"] = mustCLIOut(t, exitOK, append([]string{"apply", "--dry-run", "-f", changed}, admin...)...)
	if !strings.Contains(w.outputs["apply --dry-run (secret changed)"], "only secret values changed") {
		t.Errorf("dry run does not say that a secret changed:\n%s", w.outputs["apply --dry-run (secret changed)"])
	}
	// The storage device is not among the fence devices: validation quotes the URL.
	invalid := writeFile(t, "invalid.yaml", strings.Replace(string(spec), "/1\"]", "/2\"]", 1))
	w.outputs["apply invalid"] = mustCLIOut(t, exitUsage, append([]string{"apply", "-f", invalid}, c...)...)
	if !strings.Contains(w.outputs["apply invalid"], "storage.device") {
		t.Errorf("apply of the invalid spec did not fail on storage.device:\n%s", w.outputs["apply invalid"])
	}
}

// collectEtcd reads every key of the cluster but the spec (stored as applied, secrets
// included: agents need them) and, through the nodes' qualification, the check details.
func (w *secretsWorld) collectEtcd(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := w.admin.Get(ctx, lease.Prefix(secCluster), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, kv := range resp.Kvs {
		if string(kv.Key) == lease.Prefix(secCluster)+"spec" {
			continue
		}
		fmt.Fprintf(&b, "%s = %s\n", kv.Key, kv.Value)
	}
	w.outputs["etcd keys but spec"] = b.String()
}

func mustCLIOut(t *testing.T, want int, args ...string) string {
	t.Helper()
	stdout, stderr, code := runCLI(t, args...)
	if code != want {
		t.Fatalf("understudy %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, stdout, stderr)
	}
	return stdout + stderr
}

// withPassword runs fn with UNDERSTUDY_ETCD_PASSWORD set to the working etcd password,
// which overrides the wrong one in the agent's file (the test's t.Setenv restores it).
func withPassword(t *testing.T, fn func()) {
	t.Helper()
	if err := os.Setenv("UNDERSTUDY_ETCD_PASSWORD", markEtcdEnv); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Setenv("UNDERSTUDY_ETCD_PASSWORD", "") }()
	fn()
}

// waitPasswordChecks waits until the embedded etcd has finished every password check it
// started: a login whose client gave up (or closed) keeps hashing with bcrypt on the
// server, which is slow under -race on a busy machine, and etcd's Close does not wait
// for it, so goleak would report it. Polling is test-only synchronisation.
func waitPasswordChecks(t *testing.T) {
	deadline := time.Now().Add(60 * time.Second)
	buf := make([]byte, 1<<22)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("auth.(*authStore).CheckPassword")) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Log("etcd still checks a password after 60s")
}

// cheapPasswordHash stores user's password hashed with bcrypt's minimum cost instead of
// etcd's default (10): every login of the agent and of status checks it, and under -race
// on a busy machine a cost-10 check takes seconds, longer than a 2s-TTL keepalive may
// wait for a token. etcd accepts a hash made by the client (AuthUserChangePassword's
// hashed_password); the password itself is unchanged.
func cheapPasswordHash(t *testing.T, root *clientv3.Client, user, password string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = pb.NewAuthClient(root.ActiveConnection()).UserChangePassword(ctx,
		&pb.AuthUserChangePasswordRequest{Name: user, HashedPassword: base64.StdEncoding.EncodeToString(hash)})
	if err != nil {
		t.Fatalf("store a cheap password hash for %s: %v", user, err)
	}
}
