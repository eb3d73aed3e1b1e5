// Package pki owns a throwaway certificate authority for the lab and for tests: a CA
// and the leaf certificates it signs (servers valid for given addresses, clients named
// by their common name, which etcd takes as the user name), written as PEM files.
// Keys are ECDSA P-256; certificates are valid from an hour ago (clock skew) for a
// day. Nothing here is meant for production certificates.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ErrPKI wraps every error of the package.
var ErrPKI = errors.New("pki")

// validity of every certificate, from an hour in the past.
const validity = 24 * time.Hour

// CA is a certificate authority whose certificate and issued leaves live in Dir.
type CA struct {
	Dir  string // where the PEM files are written
	File string // the CA certificate (PEM): what clients and servers trust
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a CA named name in dir (created if missing) and writes ca.pem there.
func NewCA(dir, name string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: CA directory: %w", ErrPKI, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: CA key: %w", ErrPKI, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("%w: CA certificate: %w", ErrPKI, err)
	}
	ca := &CA{Dir: dir, File: filepath.Join(dir, "ca.pem"), key: key}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("%w: CA certificate: %w", ErrPKI, err)
	}
	return ca, writePEM(ca.File, "CERTIFICATE", der)
}

// Pool is a certificate pool trusting only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue signs a certificate for cn and writes <cn>.pem and <cn>-key.pem in Dir. Every
// certificate may authenticate a client; given addresses or names it is also a server
// certificate valid for them.
func (ca *CA) Issue(cn string, ips []net.IP, dnsNames ...string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("%w: key for %q: %w", ErrPKI, cn, err)
	}
	// A random 62-bit serial: unique without a counter shared between CAs or tests.
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", fmt.Errorf("%w: serial for %q: %w", ErrPKI, cn, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	if len(ips) > 0 || len(dnsNames) > 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", fmt.Errorf("%w: certificate for %q: %w", ErrPKI, cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("%w: key for %q: %w", ErrPKI, cn, err)
	}
	certFile, keyFile = filepath.Join(ca.Dir, cn+".pem"), filepath.Join(ca.Dir, cn+"-key.pem")
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	return certFile, keyFile, writePEM(keyFile, "PRIVATE KEY", keyDER)
}

// Loopback are the addresses a test server on this machine is reached at.
func Loopback() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} }

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	return nil
}
