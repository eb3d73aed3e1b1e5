package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/lease/leasetest"
	"github.com/understudy-ha/understudy/takeover"
)

// adminConfig writes a client config that reaches e as root (certificate CN=root).
func adminConfig(t *testing.T, e *leasetest.TLSEtcd) string {
	t.Helper()
	cert, key := e.ClientCert(t, leasetest.RootCN)
	return writeFile(t, "admin.yaml", fmt.Sprintf("etcd:\n  endpoints: [%s]\n  ca_cert: %s\n  cert: %s\n  key: %s\n",
		e.Endpoints()[0], e.CAFile(), cert, key))
}

// TestEtcdSetup: against an mTLS etcd, etcd-setup creates the cluster's user and role
// and enables auth; a second run changes nothing; an agent logged in as that user
// registers under the cluster's prefix and is denied everything outside it. Both ways
// of logging in are covered: password, and client certificate CN alone.
func TestEtcdSetup(t *testing.T) {
	e := leasetest.StartTLS(t)
	admin := adminConfig(t, e)
	tests := []struct {
		name, cluster string
		password      string // "" = --no-password, certificate CN only
	}{
		{"password", "pw", "s3cret-pw"},
		{"certificate CN", "cn", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user := "understudy-" + tc.cluster
			args := []string{"etcd-setup", "--config", admin, "--cluster", tc.cluster, "--enable-auth"}
			if tc.password != "" {
				args = append(args, "--password-file", writeFile(t, "pw", tc.password+"\n"))
			} else {
				args = append(args, "--no-password")
			}
			out := mustSetup(t, args...)
			for _, want := range []string{"role " + user + ": created", "user " + user + ": created", "granted role " + user} {
				if !strings.Contains(out, want) {
					t.Errorf("first run: missing %q in:\n%s", want, out)
				}
			}
			if out := mustSetup(t, args...); !strings.Contains(out, "nothing changed") {
				t.Errorf("second run changed something:\n%s", out)
			}

			cert, key := e.ClientCert(t, user)
			cfg := securedAgentConfig(t, tc.cluster, takeover.EtcdConfig{Endpoints: e.Endpoints(), CACert: e.CAFile(),
				Cert: cert, Key: key, Username: userIf(tc.password, user), Password: tc.password, DialTimeout: 5 * time.Second})
			runSecuredAgent(t, cfg)
			waitSecuredNode(t, lease.NewStore(e.Client(t), lease.Prefix(tc.cluster), nil), "n1")

			checkConfined(t, e.ClientAs(t, user, userIf(tc.password, user), tc.password), tc.cluster)
		})
	}
}

func userIf(password, user string) string {
	if password == "" {
		return ""
	}
	return user
}

// mustRun runs understudy and fails the test unless it exits 0.
func mustSetup(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, code := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("understudy %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

func securedAgentConfig(t *testing.T, cluster string, ec takeover.EtcdConfig) takeover.Config {
	return takeover.Config{Node: "n1", Cluster: cluster, Prefix: lease.Prefix(cluster), Etcd: ec,
		TTL: 2 * time.Second, DemoteMargin: 600 * time.Millisecond, HealthListen: "127.0.0.1:0",
		StateDir: t.TempDir(), LogFormat: "console", LogLevel: "info"}
}

// runAgent runs a real agent until the test ends.
func runSecuredAgent(t *testing.T, cfg takeover.Config) {
	t.Helper()
	a, err := takeover.NewAgent(cfg, zaptest.NewLogger(t).Named(cfg.Node))
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agent did not stop")
		}
	})
}

func waitSecuredNode(t *testing.T, st *lease.Store, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		v, err := st.View(ctx)
		if err == nil {
			if _, ok := v.Nodes[node]; ok {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node %s never registered under %s (last error %v)", node, st.Prefix(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkConfined: cli may read and write its cluster's prefix and nothing else.
func checkConfined(t *testing.T, cli *clientv3.Client, cluster string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	own := lease.Prefix(cluster)
	if _, err := cli.Get(ctx, own, clientv3.WithPrefix()); err != nil {
		t.Errorf("get own prefix %s: %v", own, err)
	}
	other := lease.Prefix(cluster + "x") // shares the text prefix but not the trailing "/"
	tests := []struct {
		name string
		op   func() error
	}{
		{"get other cluster", func() error { _, err := cli.Get(ctx, other+"spec"); return err }},
		{"put other cluster", func() error { _, err := cli.Put(ctx, other+"spec", "x"); return err }},
		{"get outside /understudy", func() error { _, err := cli.Get(ctx, "/etc/x"); return err }},
		{"put outside /understudy", func() error { _, err := cli.Put(ctx, "/etc/x", "x"); return err }},
		{"add a user as the user", func() error { _, err := cli.UserAdd(ctx, "mallory", "x"); return err }},
	}
	for _, tc := range tests {
		if err := tc.op(); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("%s: err %v, want %v", tc.name, err, rpctypes.ErrPermissionDenied)
		}
	}
}

// TestEtcdSetupUsage: bad flags are refused (exit 2, naming the flag) before etcd is
// contacted; the endpoint is unreachable on purpose.
func TestEtcdSetupUsage(t *testing.T) {
	empty := writeFile(t, "empty", "\n")
	pw := writeFile(t, "pw", "x\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"neither password flag", nil, "--password-file and --no-password"},
		{"both password flags", []string{"--password-file", pw, "--no-password"}, "--password-file and --no-password"},
		{"empty password file", []string{"--password-file", empty}, "--password-file: " + empty},
		{"missing password file", []string{"--password-file", empty + "-missing"}, "--password-file: "},
		{"root password without enable-auth", []string{"--no-password", "--root-password-file", pw}, "--root-password-file: only with --enable-auth"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"etcd-setup", "--etcd-endpoints", "http://127.0.0.1:1"}, tc.args...)
			_, stderr, code := runCLI(t, args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want %d; stderr %q, want %q", code, exitUsage, stderr, tc.want)
			}
		})
	}
}
