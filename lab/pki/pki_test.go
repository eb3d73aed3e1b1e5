package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

// A server certificate verifies for its addresses and as a client; a client
// certificate carries its CN and does not verify as a server.
func TestIssue(t *testing.T) {
	ca, err := NewCA(t.TempDir(), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		ips    []net.IP
		server bool
	}{
		{"server", []net.IP{net.ParseIP("198.51.100.1")}, true},
		{"client", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certFile, keyFile, err := ca.Issue(tc.name, tc.ips)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if leaf.Subject.CommonName != tc.name {
				t.Errorf("CN = %q, want %q", leaf.Subject.CommonName, tc.name)
			}
			_, cerr := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if cerr != nil {
				t.Errorf("as a client: %v", cerr)
			}
			_, serr := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "198.51.100.1"})
			if (serr == nil) != tc.server {
				t.Errorf("as a server for 198.51.100.1: err %v, want server=%v", serr, tc.server)
			}
		})
	}
}
