package takeover

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab/pki"
	"github.com/understudy-ha/understudy/lease"
)

// Fast detection's second check against real endpoints, plain and TLS: only silence or
// a failing /healthz is "dead"; any TLS disagreement is "undecided", never a reason to
// fence a node that is evidently there.
func TestProbeHealthEndpoint(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA(filepath.Join(dir, "ca"), "cluster")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA(filepath.Join(dir, "other"), "someone else")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, err := ca.Issue("holder", pki.Loopback())
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, nodeKey, err := ca.Issue("prober", pki.Loopback())
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	failing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "loop stalled", http.StatusServiceUnavailable)
	})
	serve := func(h http.Handler, tlsMode string) string {
		s := httptest.NewUnstartedServer(h)
		s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
		if tlsMode != "" {
			cert, err := tls.LoadX509KeyPair(serverCert, serverKey)
			if err != nil {
				t.Fatal(err)
			}
			s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			if tlsMode == "mtls" {
				s.TLS.ClientCAs, s.TLS.ClientAuth = ca.Pool(), tls.RequireAndVerifyClientCert
			}
			s.StartTLS()
		} else {
			s.Start()
		}
		t.Cleanup(s.Close)
		return s.Listener.Addr().String()
	}
	// Accepts connections (the kernel completes the handshake) but never answers: a
	// stalled agent.
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stalled.Close() })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	_ = closed.Close()

	plainOnly, err := newAgentProber(Config{})
	if err != nil {
		t.Fatal(err)
	}
	trusting, err := newAgentProber(Config{HealthTLSPeerCAFile: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := newAgentProber(Config{HealthTLSPeerCAFile: ca.File, HealthTLSCertFile: nodeCert, HealthTLSKeyFile: nodeKey})
	if err != nil {
		t.Fatal(err)
	}
	wrongCA, err := newAgentProber(Config{HealthTLSPeerCAFile: other.File, HealthTLSCertFile: nodeCert, HealthTLSKeyFile: nodeKey})
	if err != nil {
		t.Fatal(err)
	}
	plainAddr, tlsAddr, mtlsAddr := serve(ok, ""), serve(ok, "tls"), serve(ok, "mtls")
	for _, tc := range []struct {
		name   string
		p      *agentProber
		rec    lease.NodeRecord
		want   probeResult
		errors bool
	}{
		{"plain endpoint answers", plainOnly, lease.NodeRecord{Health: plainAddr}, probeAlive, false},
		{"plain endpoint fails /healthz", plainOnly, lease.NodeRecord{Health: serve(failing, "")}, probeDead, true},
		{"nothing listens", plainOnly, lease.NodeRecord{Health: closedAddr}, probeDead, true},
		{"connection accepted, no answer", plainOnly, lease.NodeRecord{Health: stalled.Addr().String()}, probeDead, true},
		{"TLS endpoint answers", trusting, lease.NodeRecord{Health: tlsAddr, HealthTLS: true}, probeAlive, false},
		{"TLS endpoint, no peer CA here", plainOnly, lease.NodeRecord{Health: tlsAddr, HealthTLS: true}, probeUndecided, true},
		{"TLS endpoint signed by another CA", wrongCA, lease.NodeRecord{Health: tlsAddr, HealthTLS: true}, probeUndecided, true},
		{"mTLS endpoint, our certificate", withCert, lease.NodeRecord{Health: mtlsAddr, HealthTLS: true}, probeAlive, false},
		{"mTLS endpoint, no certificate", trusting, lease.NodeRecord{Health: mtlsAddr, HealthTLS: true}, probeUndecided, true},
		{"record says plain, endpoint is TLS", trusting, lease.NodeRecord{Health: tlsAddr}, probeUndecided, true},
		{"record says TLS, endpoint is plain", trusting, lease.NodeRecord{Health: plainAddr, HealthTLS: true}, probeUndecided, true},
		{"unspecified host, no addresses", plainOnly, lease.NodeRecord{Health: ":7480"}, probeNoEndpoint, false},
		{"unspecified host, first address", plainOnly, lease.NodeRecord{Health: "0.0.0.0:" + port(t, plainAddr), Addresses: []string{"127.0.0.1"}}, probeAlive, false},
		{"not host:port", plainOnly, lease.NodeRecord{Health: "nonsense"}, probeNoEndpoint, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, took, err := tc.p.probe(ctx, tc.rec, 300*time.Millisecond)
			if got != tc.want {
				t.Fatalf("probe = %s (%v), want %s", got, err, tc.want)
			}
			if (err != nil) != tc.errors {
				t.Fatalf("probe error = %v, want an error: %v", err, tc.errors)
			}
			if took > 5*time.Second {
				t.Fatalf("probe took %s: not bounded by its timeout", took)
			}
		})
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewAgentProberBadFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{HealthTLSPeerCAFile: filepath.Join(dir, "missing.pem")}, "health_tls_peer_ca_file"},
		{Config{HealthTLSPeerCAFile: notPEM}, "no PEM certificate"},
	} {
		if _, err := newAgentProber(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("newAgentProber(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
}
