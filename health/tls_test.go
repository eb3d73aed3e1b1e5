package health

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a CA generated for one test; it issues server and client certificates as
// PEM files in dir. (leasetest's helpers are tied to starting an etcd member.)
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
	n    int64
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca := &testCA{t: t, dir: t.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	ca.key, ca.file = key, filepath.Join(ca.dir, "ca.pem")
	ca.write(ca.file, "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		ca.t.Fatal(err)
	}
}

// issue writes <cn>.pem and <cn>-key.pem; server certificates are for 127.0.0.1.
func (ca *testCA) issue(cn string, server bool) (certFile, keyFile string) {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	ca.n++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.n + 1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		ca.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, cn+".pem"), filepath.Join(ca.dir, cn+"-key.pem")
	ca.write(certFile, "CERTIFICATE", der)
	ca.write(keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// serveTLS runs a server with files on 127.0.0.1 until the test ends and returns its
// address; the cleanup checks that it shut down cleanly.
func serveTLS(t *testing.T, files TLSFiles) string {
	t.Helper()
	cfg, err := TLSConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- New(fakeSource{local: healthyLocal()}, nil, nil).WithTLS(cfg).ServeListener(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	return ln.Addr().String()
}

// get does one GET with a fresh transport (no connection reuse between cases).
func get(t *testing.T, tr *http.Transport, url string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestServeTLS: with TLS configured the endpoint answers clients that trust its CA, and
// nothing else: not plain HTTP, not TLS 1.1, not (with a client CA) a client without a
// certificate or with one from another CA.
func TestServeTLS(t *testing.T) {
	ca := newTestCA(t, "health CA")
	other := newTestCA(t, "other CA")
	srvCert, srvKey := ca.issue("server", true)
	cliCert, cliKey := ca.issue("client", false)
	strangerCert, strangerKey := other.issue("stranger", false)
	clientPair := func(c, k string) []tls.Certificate {
		p, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{p}
	}
	plain := serveTLS(t, TLSFiles{CertFile: srvCert, KeyFile: srvKey})
	mutual := serveTLS(t, TLSFiles{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ca.file})
	tests := []struct {
		name   string
		url    string
		tls    *tls.Config // nil: plain HTTP
		wantOK bool
	}{
		{"trusting client", "https://" + plain + "/healthz", &tls.Config{RootCAs: ca.pool()}, true},
		{"plain http client", "http://" + plain + "/healthz", nil, false},
		{"client not trusting the CA", "https://" + plain + "/healthz", &tls.Config{}, false},
		{"tls 1.1 client", "https://" + plain + "/healthz", &tls.Config{RootCAs: ca.pool(), MaxVersion: tls.VersionTLS11}, false},
		{"mtls client with cert", "https://" + mutual + "/healthz",
			&tls.Config{RootCAs: ca.pool(), Certificates: clientPair(cliCert, cliKey)}, true},
		{"mtls client without cert", "https://" + mutual + "/healthz", &tls.Config{RootCAs: ca.pool()}, false},
		{"mtls client cert from other CA", "https://" + mutual + "/healthz",
			&tls.Config{RootCAs: ca.pool(), Certificates: clientPair(strangerCert, strangerKey)}, false},
		{"mtls plain http", "http://" + mutual + "/healthz", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, err := get(t, &http.Transport{TLSClientConfig: tc.tls}, tc.url)
			ok := err == nil && code == http.StatusOK && body == "ok\n"
			if ok != tc.wantOK {
				t.Errorf("GET %s: code %d body %q err %v; want success %v", tc.url, code, body, err, tc.wantOK)
			}
			// A plain request to the TLS port must get no health answer at all (Go
			// replies 400 "client sent an HTTP request to an HTTPS server").
			if tc.tls == nil && err == nil && code != http.StatusBadRequest {
				t.Errorf("plain HTTP got %d, want 400 from the TLS server", code)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	ca := newTestCA(t, "health CA")
	cert, key := ca.issue("server", true)
	notPEM := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name  string
		files TLSFiles
		want  string // substring of the error, naming the key
	}{
		{"cert without key", TLSFiles{CertFile: cert}, "health_tls_cert_file and health_tls_key_file"},
		{"key without cert", TLSFiles{KeyFile: key}, "health_tls_cert_file and health_tls_key_file"},
		{"missing cert", TLSFiles{CertFile: missing, KeyFile: key}, "health_tls_cert_file"},
		{"key is not a key", TLSFiles{CertFile: cert, KeyFile: notPEM}, "health_tls_key_file"},
		{"cert and key swapped", TLSFiles{CertFile: key, KeyFile: cert}, "health_tls_cert_file"},
		{"missing client ca", TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: missing}, "health_tls_client_ca_file"},
		{"client ca not pem", TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: notPEM}, "health_tls_client_ca_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TLSConfig(tc.files)
			if !errors.Is(err, ErrTLSConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrTLSConfig naming %s", err, tc.want)
			}
		})
	}
	cfg, err := TLSConfig(TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: ca.file})
	if err != nil || cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("valid files: cfg %+v err %v", cfg, err)
	}
}

// TestReadOnlyEveryRoute: every route, and any other path, refuses every method that
// could change state with 405 and an Allow header naming only GET and HEAD.
func TestReadOnlyEveryRoute(t *testing.T) {
	paths := []string{"/healthz", "/readyz", "/roles/web", "/status", "/metrics", "/ui/", "/ui/state.json", "/nope"}
	for pattern := range uiAssets {
		_, p, _ := strings.Cut(pattern, " ")
		paths = append(paths, p)
	}
	h := New(fakeSource{local: healthyLocal(), cluster: cluster()}, nil, nil).Handler()
	for _, path := range paths {
		for _, method := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PROPFIND"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader("x=1")))
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow \"GET, HEAD\"", method, path, rec.Code, rec.Header().Get("Allow"))
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if path != "/nope" && rec.Code == http.StatusMethodNotAllowed || path == "/nope" && rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d", path, rec.Code)
		}
	}
}
