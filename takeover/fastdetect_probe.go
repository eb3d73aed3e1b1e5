package takeover

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/lease"
)

// probeResult is the outcome of fast detection's second check.
type probeResult int

const (
	probeDead       probeResult = iota // no answer in time: with the heartbeats lost, the holder is dead
	probeAlive                         // the agent answered 200 on /healthz
	probeUndecided                     // the agent is there but TLS between us fails: never fence on that
	probeNoEndpoint                    // the record gives nothing to probe
)

func (r probeResult) String() string {
	return [...]string{"dead", "alive", "undecided", "no endpoint"}[r]
}

// agentProber asks a holder's agent over its health endpoint, plain or TLS as its node record
// says. tls is nil when this node has no health_tls_peer_ca_file: then it cannot check a
// TLS peer, and a probe of one is undecided (fast detection leaves it to the lease).
type agentProber struct {
	plain, tls *http.Client
}

// newAgentProber builds the probe clients. With health_tls_peer_ca_file, TLS peers are
// verified against it, and this node's own health certificate (if any) is presented for
// peers that require client certificates.
func newAgentProber(cfg Config) (*agentProber, error) {
	p := &agentProber{plain: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	if cfg.HealthTLSPeerCAFile == "" {
		return p, nil
	}
	pem, err := os.ReadFile(cfg.HealthTLSPeerCAFile)
	if err != nil {
		return nil, fmt.Errorf("health_tls_peer_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("health_tls_peer_ca_file %q: no PEM certificate in it", cfg.HealthTLSPeerCAFile)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if cfg.HealthTLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.HealthTLSCertFile, cfg.HealthTLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("health_tls_cert_file %q, health_tls_key_file %q: %w", cfg.HealthTLSCertFile, cfg.HealthTLSKeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	p.tls = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tc}}
	return p, nil
}

// probe is the second check: GET the holder's /healthz (on another network than the
// heartbeats' in a typical setup), bounded by timeout. It returns the result and how
// long the check took. Only silence (no connection, no answer in time) or a non-200
// answer counts as dead; a TLS failure means something answered, so it is undecided.
func (p *agentProber) probe(ctx context.Context, rec lease.NodeRecord, timeout time.Duration) (probeResult, time.Duration, error) {
	start := time.Now()
	host, port, err := net.SplitHostPort(rec.Health)
	if err != nil {
		return probeNoEndpoint, 0, nil
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if len(rec.Addresses) == 0 {
			return probeNoEndpoint, 0, nil
		}
		host = rec.Addresses[0]
	}
	client, scheme := p.plain, "http"
	if rec.HealthTLS {
		if p.tls == nil {
			return probeUndecided, 0, errors.New("the holder's health endpoint serves TLS and health_tls_peer_ca_file is not set")
		}
		client, scheme = p.tls, "https"
	}
	ctx, cancel := context.WithTimeout(ctx, max(timeout, 50*time.Millisecond))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return probeNoEndpoint, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if tlsRefused(err) {
			return probeUndecided, time.Since(start), err
		}
		return probeDead, time.Since(start), err
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest && !rec.HealthTLS {
		// What a TLS endpoint answers plain HTTP: the record is older than its config.
		return probeUndecided, time.Since(start), fmt.Errorf("GET /healthz: %s (a TLS endpoint?)", resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return probeDead, time.Since(start), fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	return probeAlive, time.Since(start), nil
}

// tlsRefused reports a TLS handshake that failed on certificates or an alert from the
// peer: the peer is reachable and speaking, so its silence on heartbeats is not proof of
// death.
func tlsRefused(err error) bool {
	var verr *tls.CertificateVerificationError
	var rerr tls.RecordHeaderError // a plain HTTP server answered the handshake
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verr) || errors.As(err, &rerr) || errors.As(err, &unknown) ||
		errors.As(err, &hostname) || errors.As(err, &invalid) {
		return true
	}
	// The peer's alert (say, "certificate required"): crypto/tls reports it as a
	// net.OpError with this Op and an unexported error type.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	// net/http turns the RecordHeaderError of a plain HTTP answer into this unwrapped one.
	return strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}
