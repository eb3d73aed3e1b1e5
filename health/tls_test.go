package health

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab/pki"
)

// testCA is a CA generated for one test, issuing PEM files in a t.TempDir.
type testCA struct {
	t *testing.T
	*pki.CA
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca, err := pki.NewCA(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{t: t, CA: ca}
}

// issue writes <cn>.pem and <cn>-key.pem; server certificates are for 127.0.0.1 and ::1.
func (ca *testCA) issue(cn string, server bool) (certFile, keyFile string) {
	ca.t.Helper()
	var ips []net.IP
	if server {
		ips = pki.Loopback()
	}
	certFile, keyFile, err := ca.Issue(cn, ips)
	if err != nil {
		ca.t.Fatal(err)
	}
	return certFile, keyFile
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
	mutual := serveTLS(t, TLSFiles{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ca.File})
	tests := []struct {
		name   string
		url    string
		tls    *tls.Config // nil: plain HTTP
		wantOK bool
	}{
		{"trusting client", "https://" + plain + "/healthz", &tls.Config{RootCAs: ca.Pool()}, true},
		{"plain http client", "http://" + plain + "/healthz", nil, false},
		{"client not trusting the CA", "https://" + plain + "/healthz", &tls.Config{}, false},
		{"tls 1.1 client", "https://" + plain + "/healthz", &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}, false},
		{"mtls client with cert", "https://" + mutual + "/healthz",
			&tls.Config{RootCAs: ca.Pool(), Certificates: clientPair(cliCert, cliKey)}, true},
		{"mtls client without cert", "https://" + mutual + "/healthz", &tls.Config{RootCAs: ca.Pool()}, false},
		{"mtls client cert from other CA", "https://" + mutual + "/healthz",
			&tls.Config{RootCAs: ca.Pool(), Certificates: clientPair(strangerCert, strangerKey)}, false},
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
	cfg, err := TLSConfig(TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: ca.File})
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
