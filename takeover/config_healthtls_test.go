package takeover

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestConfigHealthTLS: the health_tls_* keys load from the file and the flags, and each
// misconfiguration is refused naming the key at fault.
func TestConfigHealthTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := filepath.Join(dir, "h.pem"), filepath.Join(dir, "h-key.pem"), filepath.Join(dir, "ca.pem")
	for _, p := range []string{cert, key, ca} {
		if err := os.WriteFile(p, []byte("pem\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name    string
		file    string
		args    []string
		wantErr string // "" = valid
	}{
		{"none", minimalFile, nil, ""},
		{"cert and key in the file", minimalFile + "health_tls_cert_file: " + cert + "\nhealth_tls_key_file: " + key + "\n", nil, ""},
		{"all three as flags", minimalFile, []string{"--health-tls-cert-file", cert, "--health-tls-key-file", key,
			"--health-tls-client-ca-file", ca}, ""},
		{"cert without key", minimalFile, []string{"--health-tls-cert-file", cert},
			"health_tls_key_file: required with health_tls_cert_file"},
		{"key without cert", minimalFile, []string{"--health-tls-key-file", key},
			"health_tls_cert_file: required with health_tls_key_file"},
		{"client ca alone", minimalFile, []string{"--health-tls-client-ca-file", ca},
			"health_tls_client_ca_file: needs health_tls_cert_file"},
		{"unreadable cert", minimalFile, []string{"--health-tls-cert-file", missing, "--health-tls-key-file", key},
			"health_tls_cert_file: stat " + missing},
		{"cert is a directory", minimalFile, []string{"--health-tls-cert-file", dir, "--health-tls-key-file", key},
			"is not a regular file"},
		{"unreadable client ca", minimalFile, []string{"--health-tls-cert-file", cert, "--health-tls-key-file", key,
			"--health-tls-client-ca-file", missing}, "health_tls_client_ca_file: stat " + missing},
		{"endpoint disabled", minimalFile, []string{"--health-listen", "", "--health-tls-cert-file", cert, "--health-tls-key-file", key},
			`health_tls_cert_file: set but health_listen is ""`},
		{"fast detection without the peers' CA", minimalFile + "heartbeat_listen: 127.0.0.1:7946\nheartbeat_key_file: " + key + "\n",
			[]string{"--health-tls-cert-file", cert, "--health-tls-key-file", key}, "health_tls_peer_ca_file: required with heartbeat_listen"},
		{"fast detection with the peers' CA", minimalFile + "heartbeat_listen: 127.0.0.1:7946\nheartbeat_key_file: " + key + "\n",
			[]string{"--health-tls-cert-file", cert, "--health-tls-key-file", key, "--health-tls-peer-ca-file", ca}, ""},
		{"unreadable peer ca", minimalFile, []string{"--health-tls-peer-ca-file", missing}, "health_tls_peer_ca_file: stat " + missing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearConfigEnv(t)
			path := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
			BindFlags(fs)
			if err := fs.Parse(append([]string{"--config", path}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(fs)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				if tc.name != "none" && (c.HealthTLSCertFile != cert || c.HealthTLSKeyFile != key) {
					t.Errorf("loaded cert %q key %q", c.HealthTLSCertFile, c.HealthTLSKeyFile)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("LoadConfig error = %v, want ErrInvalidConfig containing %q", err, tc.wantErr)
			}
		})
	}
}
