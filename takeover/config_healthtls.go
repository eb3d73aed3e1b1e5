package takeover

import (
	"fmt"
	"os"
)

// HealthServesTLS reports whether the health endpoint is on and speaks TLS: the agent
// then loads its certificates, and its node record tells fast detection's probes so.
func (c Config) HealthServesTLS() bool {
	return c.HealthListen != "" && c.HealthTLSCertFile != ""
}

// validateHealthTLS checks the health_tls_* keys: cert and key together, the client CA
// only with them, every file readable (the contents are checked when the endpoint
// starts). With fast detection on, a TLS node also needs the peers' CA: its peers speak
// TLS too, and its probes of them could otherwise never decide.
func (c Config) validateHealthTLS() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cert, key, ca, peer := c.HealthTLSCertFile, c.HealthTLSKeyFile, c.HealthTLSClientCAFile, c.HealthTLSPeerCAFile
	switch {
	case cert != "" && key == "":
		add("health_tls_key_file: required with health_tls_cert_file (set both or neither)")
	case cert == "" && key != "":
		add("health_tls_cert_file: required with health_tls_key_file (set both or neither)")
	case cert == "" && ca != "":
		add("health_tls_client_ca_file: needs health_tls_cert_file and health_tls_key_file (client certificates are checked only over TLS)")
	}
	for _, f := range []struct{ key, path string }{
		{"health_tls_cert_file", cert}, {"health_tls_key_file", key}, {"health_tls_client_ca_file", ca},
		{"health_tls_peer_ca_file", peer},
	} {
		if f.path == "" {
			continue
		}
		// Stat first: opening a FIFO would block the agent's start.
		if fi, err := os.Stat(f.path); err != nil {
			add("%s: %v", f.key, err)
		} else if !fi.Mode().IsRegular() {
			add("%s: %q is not a regular file", f.key, f.path)
		} else if fh, err := os.Open(f.path); err != nil {
			add("%s: %v", f.key, err)
		} else {
			_ = fh.Close()
		}
	}
	if cert != "" || key != "" {
		if c.HealthListen == "" {
			add("health_tls_cert_file: set but health_listen is \"\" (the endpoint is disabled)")
		}
		if c.HeartbeatListen != "" && peer == "" {
			add("health_tls_peer_ca_file: required with heartbeat_listen and health_tls_cert_file (fast detection probes the peers' TLS health endpoints and must verify them)")
		}
	}
	return errs
}
