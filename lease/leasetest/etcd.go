// Package leasetest runs a real single-member etcd inside the test process, for the
// tests of any package that talks to etcd. Never mock the etcd client: these tests stop
// and restart the member to exercise lease expiry for real.
//
// The member uses TickMs 100 and ElectionMs 500, so etcd's minimum lease TTL is
// ceil(1.5 * 0.5s) = 1s and sessions of 1s are granted as requested. fsync is off: the
// data dir is a throwaway temp dir and the tests must not depend on disk speed.
package leasetest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// readyTimeout bounds how long a member may take to start; generous because the test
// machines are shared and run with -race.
const readyTimeout = 60 * time.Second

// Etcd is one embedded etcd member listening on 127.0.0.1.
type Etcd struct {
	dir       string
	clientURL url.URL
	peerURL   url.URL
	clientTLS *transport.TLSInfo // nil: plain client port; see StartTLS

	mu sync.Mutex
	e  *embed.Etcd // guarded by mu; nil while stopped
}

// Start starts a member on free 127.0.0.1 ports with a temp data dir. t.Cleanup stops it.
func Start(t testing.TB) *Etcd {
	t.Helper()
	e, err := startOnFreePorts(t, nil)
	if err != nil {
		t.Fatalf("leasetest: start etcd: %v", err)
	}
	return e
}

// startOnFreePorts starts a member with client TLS tls (nil: plain) and registers its
// Stop with t.Cleanup.
func startOnFreePorts(t testing.TB, tls *transport.TLSInfo) (*Etcd, error) {
	scheme := "http"
	if tls != nil {
		scheme = "https"
	}
	var lastErr error
	for range 5 { // a port picked free may be taken by the time etcd binds it: pick again
		dir := t.TempDir() // fresh, so a failed attempt leaves no half-bootstrapped member
		ports, err := freePorts(2)
		if err != nil {
			return nil, fmt.Errorf("pick ports: %w", err)
		}
		e := &Etcd{
			dir:       dir,
			clientURL: url.URL{Scheme: scheme, Host: fmt.Sprintf("127.0.0.1:%d", ports[0])},
			peerURL:   url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])},
			clientTLS: tls,
		}
		if lastErr = e.start(); lastErr == nil {
			t.Cleanup(e.Stop)
			return e, nil
		}
		if !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func (e *Etcd) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = "leasetest"
	cfg.Dir = e.dir
	cfg.ListenClientUrls = []url.URL{e.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{e.clientURL}
	cfg.ListenPeerUrls = []url.URL{e.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{e.peerURL}
	cfg.InitialCluster = cfg.Name + "=" + e.peerURL.String()
	cfg.TickMs = 100
	cfg.ElectionMs = 500
	cfg.UnsafeNoFsync = true
	// Tests create users with passwords: etcd's default bcrypt cost makes each
	// authentication take seconds under -race, longer than a 2 s lease.
	cfg.BcryptCost = uint(bcrypt.MinCost)
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	if e.clientTLS != nil {
		cfg.ClientTLSInfo = *e.clientTLS
		cfg.ClientAutoTLS = false
	}
	return cfg
}

// start launches the member and waits until it serves.
func (e *Etcd) start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.e != nil {
		return nil
	}
	srv, err := embed.StartEtcd(e.config())
	if err != nil {
		return err
	}
	select {
	case <-srv.Server.ReadyNotify():
	case err := <-srv.Err():
		srv.Close()
		return fmt.Errorf("etcd failed while starting: %w", err)
	case <-time.After(readyTimeout):
		srv.Close()
		return fmt.Errorf("etcd not ready within %s", readyTimeout)
	}
	e.e = srv
	return nil
}

// Endpoints returns the client URLs, stable across Stop and Restart.
func (e *Etcd) Endpoints() []string { return []string{e.clientURL.String()} }

// Client returns a new client of the member, closed on t's cleanup. The client keeps
// reconnecting across Stop and Restart.
func (e *Etcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   e.Endpoints(),
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("leasetest: etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Stop stops the member (simulating an outage); its data is kept for Restart. Stopping a
// stopped member does nothing.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.e == nil {
		return
	}
	e.e.Close()
	e.e = nil
}

// Restart starts a stopped member again on the same ports and data dir.
func (e *Etcd) Restart(t testing.TB) {
	t.Helper()
	var err error
	for range 20 { // the old sockets may linger for a moment after Stop
		if err = e.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("leasetest: restart etcd: %v", err)
}

// WaitReady blocks until cli can read from the member, or fails t when ctx is done. Use
// it after Restart before asserting on server state through an existing client.
func WaitReady(ctx context.Context, t testing.TB, cli *clientv3.Client) {
	t.Helper()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "leasetest-ready")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("leasetest: etcd not reachable: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
