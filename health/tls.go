package health

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// ErrTLSConfig: the endpoint's TLS files cannot be used; the message names the agent
// configuration key (health_tls_cert_file, health_tls_key_file, health_tls_client_ca_file).
var ErrTLSConfig = errors.New("health: invalid TLS configuration")

// TLSFiles names the PEM files of the endpoint's TLS setup, the agent's health_tls_* keys.
// CertFile and KeyFile go together; ClientCAFile is optional and needs them.
type TLSFiles struct {
	CertFile, KeyFile, ClientCAFile string
}

// TLSConfig loads f into a server configuration: TLS 1.2 or newer only and, when
// ClientCAFile is set, a client certificate signed by one of its CAs is required (a
// client without one fails the handshake, before any route runs). The files are read
// once: a renewed certificate takes effect when the agent restarts.
func TLSConfig(f TLSFiles) (*tls.Config, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, fmt.Errorf("%w: health_tls_cert_file and health_tls_key_file: set both or neither", ErrTLSConfig)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: health_tls_cert_file %q, health_tls_key_file %q: %w", ErrTLSConfig, f.CertFile, f.KeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.ClientCAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: health_tls_client_ca_file: %w", ErrTLSConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: health_tls_client_ca_file %q: no PEM certificate in it", ErrTLSConfig, f.ClientCAFile)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// WithTLS makes Serve and ServeListener speak TLS with cfg (see TLSConfig); without it
// they serve plain HTTP. Call it before serving; it returns s for chaining. A cfg below
// TLS 1.2 is raised to 1.2.
func (s *Server) WithTLS(cfg *tls.Config) *Server {
	if cfg == nil {
		s.tls = nil
		return s
	}
	c := cfg.Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	s.tls = c
	return s
}

// readOnly refuses every method but GET and HEAD before routing, whatever the path: the
// endpoint must stay read-only even if a route were added with another method, and an
// unauthenticated network peer must not learn which paths exist by probing with POST.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			text(w, http.StatusMethodNotAllowed, "method %s not allowed: this endpoint is read-only", r.Method)
			return
		}
		h.ServeHTTP(w, r)
	})
}
