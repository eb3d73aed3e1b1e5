package leasetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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
	pemDir string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	server transport.TLSInfo
}

// StartTLS starts a member like Start but with client mTLS. The CA, the server's
// certificate and every ClientCert are PEM files in a t.TempDir. t.Cleanup stops it.
func StartTLS(t testing.TB) *TLSEtcd {
	t.Helper()
	e := &TLSEtcd{pemDir: t.TempDir()}
	if err := e.writeCA(); err != nil {
		t.Fatalf("leasetest: test CA: %v", err)
	}
	cert, key, err := e.issue("etcd-server", true)
	if err != nil {
		t.Fatalf("leasetest: server certificate: %v", err)
	}
	e.server = transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: e.caFile, ClientCertAuth: true}
	// The member keeps its TLS settings, so Etcd.Restart brings it back with TLS.
	if e.Etcd, err = startOnFreePorts(t, &e.server); err != nil {
		t.Fatalf("leasetest: start TLS etcd: %v", err)
	}
	return e
}

// CAFile is the PEM file of the CA that signed the server's and the clients'
// certificates: a client's ca_cert.
func (e *TLSEtcd) CAFile() string { return e.caFile }

// ClientCert issues a client certificate with common name cn (etcd's user name for
// certificate authentication) and returns its PEM certificate and key files.
func (e *TLSEtcd) ClientCert(t testing.TB, cn string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := e.issue(cn, false)
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
	tlsCfg, err := transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: e.caFile}.ClientConfig()
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

// writeCA generates the test's CA key and self-signed certificate.
func (e *TLSEtcd) writeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "leasetest CA"},
		NotBefore:             time.Now().Add(-time.Hour), // tolerate clock skew
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if e.ca, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	e.caKey = key
	e.caFile = filepath.Join(e.pemDir, "ca.pem")
	return writePEM(e.caFile, "CERTIFICATE", der)
}

// serial is a random 62-bit serial number: unique per issued certificate without a
// counter shared between tests.
func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
}

// issue signs a leaf certificate for cn with the test CA and writes <cn>.pem and
// <cn>-key.pem. Server certificates are valid for 127.0.0.1, ::1 and localhost.
func (e *TLSEtcd) issue(cn string, server bool) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	sn, err := serial()
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca, &key.PublicKey, e.caKey)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile = filepath.Join(e.pemDir, cn+".pem")
	keyFile = filepath.Join(e.pemDir, cn+"-key.pem")
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
