package leasetest

import (
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lab/pki"
)

// RootCN is the common name of the certificate TLSEtcd.Client presents: once auth is
// enabled, etcd takes a client certificate's CN as the user name, so this client is the
// administrator.
const RootCN = "root"

// TLSEtcd is an embedded member whose client port speaks TLS only and requires a client
// certificate signed by a CA generated for the test (mutual TLS, as in production). The
// peer port stays plain: a single member has no peers.
type TLSEtcd struct {
	*Etcd
	ca     *pki.CA
	server transport.TLSInfo
}

// StartTLS starts a member like Start but with client mTLS. The CA, the server's
// certificate and every ClientCert are PEM files in a t.TempDir. t.Cleanup stops it.
func StartTLS(t testing.TB) *TLSEtcd {
	t.Helper()
	ca, err := pki.NewCA(t.TempDir(), "leasetest CA")
	if err != nil {
		t.Fatalf("leasetest: test CA: %v", err)
	}
	e := &TLSEtcd{ca: ca}
	cert, key, err := ca.Issue("etcd-server", pki.Loopback(), "localhost")
	if err != nil {
		t.Fatalf("leasetest: server certificate: %v", err)
	}
	e.server = transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: ca.File, ClientCertAuth: true}
	// The member keeps its TLS settings, so Etcd.Restart brings it back with TLS.
	if e.Etcd, err = startOnFreePorts(t, &e.server); err != nil {
		t.Fatalf("leasetest: start TLS etcd: %v", err)
	}
	return e
}

// CAFile is the PEM file of the CA that signed the server's and the clients'
// certificates: a client's ca_cert.
func (e *TLSEtcd) CAFile() string { return e.ca.File }

// ClientCert issues a client certificate with common name cn (etcd's user name for
// certificate authentication) and returns its PEM certificate and key files.
func (e *TLSEtcd) ClientCert(t testing.TB, cn string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := e.ca.Issue(cn, nil)
	if err != nil {
		t.Fatalf("leasetest: client certificate for %q: %v", cn, err)
	}
	return certFile, keyFile
}

// Client returns a client presenting a RootCN certificate (the administrator once auth
// is enabled), closed on t's cleanup.
func (e *TLSEtcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return e.ClientAs(t, RootCN, "", "")
}

// ClientAs returns a client presenting a certificate for cn and, when user is not
// empty, authenticating with user and password (which then take precedence over the
// certificate's CN). Closed on t's cleanup.
func (e *TLSEtcd) ClientAs(t testing.TB, cn, user, password string) *clientv3.Client {
	t.Helper()
	cert, key := e.ClientCert(t, cn)
	tlsCfg, err := transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: e.ca.File}.ClientConfig()
	if err != nil {
		t.Fatalf("leasetest: client TLS for %q: %v", cn, err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: e.Endpoints(), DialTimeout: 10 * time.Second, Logger: zap.NewNop(),
		TLS: tlsCfg, Username: user, Password: password,
	})
	if err != nil {
		t.Fatalf("leasetest: etcd TLS client for %q: %v", cn, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
