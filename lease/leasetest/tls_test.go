package leasetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestTLSRequiresClientCertificate: the member refuses a client that trusts its CA but
// presents no certificate, and serves one with a certificate the test CA signed.
func TestTLSRequiresClientCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := StartTLS(t)

	caPEM, err := os.ReadFile(e.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", e.CAFile())
	}
	tests := []struct {
		name    string
		cli     func() *clientv3.Client
		wantErr bool
	}{
		{"no client certificate", func() *clientv3.Client {
			cli, err := clientv3.New(clientv3.Config{
				Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
				TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			})
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			t.Cleanup(func() { _ = cli.Close() })
			return cli
		}, true},
		{"CA-signed client certificate", func() *clientv3.Client { return e.ClientAs(t, "alice", "", "") }, false},
		{"root client", func() *clientv3.Client { return e.Client(t) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			defer rcancel()
			_, err := tc.cli().Put(rctx, "k", "v")
			if (err != nil) != tc.wantErr {
				t.Fatalf("put: err %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// TestTLSRestart: a restarted TLS member still requires and accepts certificates.
func TestTLSRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := StartTLS(t)
	cli := e.Client(t)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	e.Stop()
	e.Restart(t)
	WaitReady(ctx, t, cli)
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get after restart: %v %v", resp, err)
	}
}
