//go:build linux

package lab

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.yaml.in/yaml/v3"

	"github.com/understudy-ha/understudy/lab/pki"
)

// A Secure lab's etcd: TLS for clients with certificates of the lab's CA, and
// authentication on. The lab and its CLI commands are root (certificate CN root); the
// agents are the cluster's user (CN understudy-<cluster>), which `understudy
// etcd-setup` limits to the cluster's prefix.

// secureLab holds a Secure lab's CA and the files made from it.
type secureLab struct {
	ca                *pki.CA
	rootCert, rootKey string
}

// prepareTLS creates the CA, root's certificate and the agents' in <dir>/tls, and the
// CLI's config file; the agents' etcd settings go to f.etcdCreds.
func (f *Farm) prepareTLS() error {
	ca, err := pki.NewCA(filepath.Join(f.dir, "tls"), "understudy lab CA")
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	s := &secureLab{ca: ca}
	if s.rootCert, s.rootKey, err = ca.Issue("root", nil); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	agentCert, agentKey, err := ca.Issue("understudy-"+f.opts.Cluster, nil)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	f.secure = s
	f.etcdCreds = etcdConfig{CACert: ca.File, Cert: agentCert, Key: agentKey}
	// The CLI reads TLS settings from a config file; --etcd-endpoints still names the
	// members on each command line.
	admin := struct {
		Etcd etcdConfig `yaml:"etcd"`
	}{etcdConfig{CACert: ca.File, Cert: s.rootCert, Key: s.rootKey}}
	text, err := yaml.Marshal(admin)
	if err != nil {
		return fmt.Errorf("lab: encode the CLI's config: %w", err)
	}
	f.cliConfig = filepath.Join(ca.Dir, "cli.yaml")
	if err := os.WriteFile(f.cliConfig, text, 0o600); err != nil {
		return fmt.Errorf("lab: write the CLI's config: %w", err)
	}
	return nil
}

// healthTLS gives a Secure lab's node a certificate for its health endpoint on ip, and
// turns on mutual TLS there; the lab's CA verifies the peers in fast detection's probe.
func (f *Farm) healthTLS(node, ip string, cfg *agentConfig) error {
	if f.secure == nil {
		return nil
	}
	cert, key, err := f.secure.ca.Issue("health-"+node, []net.IP{net.ParseIP(ip)})
	if err != nil {
		return fmt.Errorf("lab: node %s: %w", node, err)
	}
	cfg.HealthCert, cfg.HealthKey = cert, key
	cfg.HealthClientCA, cfg.HealthPeerCA = f.secure.ca.File, f.secure.ca.File
	return nil
}

// memberTLS issues member m's server certificate (for its address) and returns the
// `lab etcd` flags that make it require client certificates.
func (f *Farm) memberTLS(m etcdMember, addr string) ([]string, error) {
	cert, key, err := f.secure.ca.Issue("etcd-"+m.name, []net.IP{net.ParseIP(addr)})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return []string{"--cert-file", cert, "--key-file", key, "--trusted-ca-file", f.secure.ca.File}, nil
}

// rootTLS is the TLS configuration of the lab's own etcd client (root).
func (f *Farm) rootTLS() (*tls.Config, error) {
	cfg, err := transport.TLSInfo{CertFile: f.secure.rootCert, KeyFile: f.secure.rootKey, TrustedCAFile: f.secure.ca.File}.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("lab: etcd client TLS: %w", err)
	}
	return cfg, nil
}

// enableAuth creates the cluster's etcd user and role and turns authentication on,
// with the same command an operator runs.
func (f *Farm) enableAuth(ctx context.Context) error {
	if f.secure == nil {
		return nil
	}
	if _, err := f.CLI(ctx, "etcd-setup", "--no-password", "--enable-auth"); err != nil {
		return err
	}
	return nil
}
