//go:build linux

package lab_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/understudy-ha/understudy/lab"
)

// TestEtcdClusterQuorumBack: a Secure lab with three etcd members (mTLS, auth on) refuses
// a client without a certificate and keeps the agents' user to the cluster's prefix; it
// loses its quorum (two members stopped) and gets it back, the lab's own client reading
// the cluster again within a few seconds, and killing the leader yields a new one.
// quorumLost is short here: the nemesis (quorum-loss) holds 30 s with agents running.
const quorumLost = 5 * time.Second

func TestEtcdClusterQuorumBack(t *testing.T) {
	requireNetLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := lab.NewFarm(ctx, lab.Options{Binary: binary, Netns: true, TTL: 2 * time.Second, EtcdMembers: 3, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Errorf("close farm: %v", err)
		}
	}()
	if _, err := f.Status(ctx); err != nil {
		t.Fatal(err)
	}
	checkLockedDown(t, ctx, f)
	for _, m := range []string{"etcd", "etcd2"} {
		if _, err := f.EtcdSignal(m, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(quorumLost)
	for _, m := range []string{"etcd", "etcd2"} {
		if _, err := f.EtcdSignal(m, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	back := time.Now()
	for {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := f.Status(sctx)
		scancel()
		if err == nil {
			break
		}
		t.Logf("+%s: %v", time.Since(back).Round(time.Millisecond), err)
		if time.Since(back) > 20*time.Second {
			t.Fatalf("the lab's client still cannot read the cluster %s after the quorum came back", time.Since(back))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("cluster readable %s after the quorum came back", time.Since(back).Round(time.Millisecond))
	leader, err := f.EtcdLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.EtcdKill(leader); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := f.EtcdLeader(ctx)
		if err == nil && l != leader {
			t.Logf("killed leader %s; new leader %s", leader, l)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after killing %s: %v", leader, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := f.EtcdRestart(leader); err != nil {
		t.Fatal(err)
	}
}

// checkLockedDown: without a client certificate the lab's etcd refuses the connection;
// with the agents' certificate (the cluster's user) reads inside the cluster's prefix
// work and outside it are denied.
func checkLockedDown(t *testing.T, ctx context.Context, f *lab.Farm) {
	t.Helper()
	dial := f.Net().DialContext(f.Net().Etcd().NS)
	client := func(tlsCfg *tls.Config) *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: f.Endpoints(), DialTimeout: 3 * time.Second, TLS: tlsCfg,
			Logger: zap.NewNop(), DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return dial(ctx, "tcp", addr)
			})}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cli.Close() })
		return cli
	}
	tlsDir := filepath.Join(f.Dir(), "tls")
	noCert, err := transport.TLSInfo{TrustedCAFile: filepath.Join(tlsDir, "ca.pem")}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = client(noCert).Get(gctx, "/understudy/lab/", clientv3.WithPrefix())
	cancel()
	if err == nil {
		t.Fatal("a client without a certificate read the cluster")
	}
	agent, err := transport.TLSInfo{TrustedCAFile: filepath.Join(tlsDir, "ca.pem"),
		CertFile: filepath.Join(tlsDir, "understudy-lab.pem"), KeyFile: filepath.Join(tlsDir, "understudy-lab-key.pem")}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli := client(agent)
	gctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Get(gctx, "/understudy/lab/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("the cluster's user cannot read its prefix: %v", err)
	}
	if _, err := cli.Get(gctx, "/understudy/other/", clientv3.WithPrefix()); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the cluster's user read outside its prefix: err %v, want permission denied", err)
	}
}
