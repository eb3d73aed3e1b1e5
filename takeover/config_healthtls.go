package takeover

import (
	"fmt"
	"os"
)

// validateHealthTLS checks the health_tls_* keys: cert and key together, the client CA
// only with them, every file readable (the contents are checked when the endpoint
// starts). Fast detection's second check (probeAgent) speaks plain HTTP without a
// client certificate, so a TLS endpoint would make every probe of this node fail and a
// heartbeat loss alone would fence it: refused until the probe can speak TLS.
func (c Config) validateHealthTLS() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cert, key, ca := c.HealthTLSCertFile, c.HealthTLSKeyFile, c.HealthTLSClientCAFile
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
		if c.HeartbeatListen != "" {
			add("health_tls_cert_file: not supported with heartbeat_listen yet (fast detection probes peers' health endpoints over plain HTTP)")
		}
	}
	return errs
}
