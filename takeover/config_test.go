package takeover

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// clearConfigEnv unsets every UNDERSTUDY_* configuration variable for the test
// (empty counts as unset), so the machine's environment cannot leak in.
func clearConfigEnv(t *testing.T) {
	t.Setenv("UNDERSTUDY_CONFIG", "")
	for _, o := range options {
		t.Setenv("UNDERSTUDY_"+strings.ToUpper(strings.ReplaceAll(o.key, ".", "_")), "")
	}
}

const minimalFile = "node: n1\netcd:\n  endpoints: [http://127.0.0.1:2379]\n"

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		file    string // "" = no --config
		env     map[string]string
		args    []string
		want    func(c *Config) // edits the defaults of minimalFile into the expected config
		wantErr string          // substring of the error
	}{
		{
			name: "defaults",
			file: minimalFile,
			want: func(c *Config) {},
		},
		{
			name: "file sets every key",
			file: `node: n2
cluster: prod
prefix: /ha/prod/
etcd:
  endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]
  ca_cert: /etc/understudy/ca.pem
  cert: /etc/understudy/n2.pem
  key: /etc/understudy/n2-key.pem
  username: understudy
  password: s3cret
  dial_timeout: 2s
ttl: 6s
demote_margin: 1500ms
health_listen: 127.0.0.1:9000
state_dir: /srv/understudy
addresses: [10.0.0.12, "fd00::12"]
log_format: console
log_level: debug
`,
			want: func(c *Config) {
				c.Node, c.Cluster, c.Prefix = "n2", "prod", "/ha/prod/"
				c.Etcd = EtcdConfig{Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"},
					CACert: "/etc/understudy/ca.pem", Cert: "/etc/understudy/n2.pem", Key: "/etc/understudy/n2-key.pem",
					Username: "understudy", Password: "s3cret", DialTimeout: 2 * time.Second}
				c.TTL, c.DemoteMargin = 6*time.Second, 1500*time.Millisecond
				c.HealthListen, c.StateDir = "127.0.0.1:9000", "/srv/understudy"
				c.Addresses = []string{"10.0.0.12", "fd00::12"}
				c.LogFormat, c.LogLevel = "console", "debug"
			},
		},
		{
			name: "env overrides file",
			file: minimalFile + "ttl: 5s\ncluster: a\n",
			env: map[string]string{"UNDERSTUDY_TTL": "7s", "UNDERSTUDY_CLUSTER": "b",
				"UNDERSTUDY_ETCD_ENDPOINTS": "http://10.0.0.1:2379, http://10.0.0.2:2379"},
			want: func(c *Config) {
				c.TTL, c.DemoteMargin, c.Cluster, c.Prefix = 7*time.Second, 7*time.Second/3, "b", "/understudy/b/"
				c.Etcd.Endpoints = []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}
			},
		},
		{
			name: "flag overrides env",
			file: minimalFile + "ttl: 5s\n",
			env:  map[string]string{"UNDERSTUDY_TTL": "7s", "UNDERSTUDY_NODE": "from-env"},
			args: []string{"--ttl", "9s", "--node", "from-flag", "--etcd-endpoints", "http://h1:2379,http://h2:2379"},
			want: func(c *Config) {
				c.TTL, c.DemoteMargin, c.Node = 9*time.Second, 3*time.Second, "from-flag"
				c.Etcd.Endpoints = []string{"http://h1:2379", "http://h2:2379"}
			},
		},
		{
			name: "env only, password from env",
			env: map[string]string{"UNDERSTUDY_NODE": "n3", "UNDERSTUDY_ETCD_ENDPOINTS": "http://127.0.0.1:2379",
				"UNDERSTUDY_ETCD_USERNAME": "u", "UNDERSTUDY_ETCD_PASSWORD": "p"},
			want: func(c *Config) { c.Node, c.Etcd.Username, c.Etcd.Password = "n3", "u", "p" },
		},
		{name: "unknown key", file: minimalFile + "nod: x\n", wantErr: `line 4: unknown key "nod"`},
		{name: "unknown nested key", file: minimalFile + "  endpoint: x\n", wantErr: `unknown key "etcd.endpoint"`},
		{name: "section not a mapping", file: "node: n1\netcd: http://x\n", wantErr: "etcd: must be a mapping"},
		{name: "top level not a mapping", file: "- node\n", wantErr: "top level must be a mapping"},
		{name: "ttl below minimum", file: minimalFile + "ttl: 500ms\n", wantErr: "ttl: 500ms is below the minimum 1s"},
		{name: "ttl without unit", file: minimalFile + "ttl: 3\n", wantErr: `3 has no unit; write a duration like "3s"`},
		{name: "ttl not whole seconds", file: minimalFile + "ttl: 1500ms\n", wantErr: "ttl: 1.5s must be a whole number of seconds"},
		{name: "ttl not a duration", file: minimalFile, env: map[string]string{"UNDERSTUDY_TTL": "soon"}, wantErr: `"soon" is not a duration`},
		{name: "demote margin too large", file: minimalFile + "demote_margin: 2s\n", wantErr: "demote_margin: 2s must be between 0"},
		{name: "bad node name", file: "node: Web_1\netcd: {endpoints: [http://h:1]}\n", wantErr: `node: "Web_1" must match`},
		{name: "missing node", file: "etcd: {endpoints: [http://h:1]}\n", wantErr: `node: "" is required`},
		{name: "no endpoints", file: "node: n1\n", wantErr: "etcd.endpoints: at least one endpoint URL is required"},
		{name: "bad endpoint URL", file: "node: n1\netcd: {endpoints: [http://h:1, '127.0.0.1:2379']}\n",
			wantErr: `etcd.endpoints[1]: "127.0.0.1:2379" is not an http://, https://, unix:// or unixs:// URL`},
		{name: "partial TLS", file: minimalFile + "  cert: /c.pem\n", wantErr: "set ca_cert alone, or ca_cert, cert and key together (missing: etcd.ca_cert, etcd.key)"},
		{name: "password without user", file: minimalFile + "  password: x\n", wantErr: "etcd.password: set without etcd.username"},
		{name: "bad address", file: minimalFile + "addresses: [10.0.0.300]\n", wantErr: `addresses[0]: "10.0.0.300" is not an IP address`},
		{name: "bad health listen", file: minimalFile + "health_listen: 7480\n", wantErr: `health_listen: "7480" is not host:port`},
		{name: "bad log format", file: minimalFile + "log_format: xml\n", wantErr: `log_format: "xml" is not one of json, console`},
		{name: "relative state dir", file: minimalFile + "state_dir: var/lib\n", wantErr: `state_dir: "var/lib" must be an absolute path`},
		{name: "bad yaml", file: "node: [\n", wantErr: "config file"},
		{name: "all problems at once", file: "node: X\nttl: 1500ms\nlog_level: loud\n",
			wantErr: "node: \"X\" must match [a-z0-9][a-z0-9.-]{0,62} (lower case letters, digits, '.', '-')\netcd.endpoints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearConfigEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := tt.args
			if tt.file != "" {
				path := filepath.Join(t.TempDir(), "agent.yaml")
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"--config", path}, args...)
			}
			fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
			BindFlags(fs)
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			got, err := LoadConfig(fs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadConfig error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			want := defaultTestConfig()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("LoadConfig =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// defaultTestConfig is what minimalFile loads to.
func defaultTestConfig() Config {
	return Config{
		Node: "n1", Cluster: "default", Prefix: "/understudy/default/",
		Etcd:         EtcdConfig{Endpoints: []string{"http://127.0.0.1:2379"}, DialTimeout: 5 * time.Second},
		TTL:          3 * time.Second,
		DemoteMargin: time.Second,
		HealthListen: ":7480",
		StateDir:     "/var/lib/understudy",
		Addresses:    []string{},
		LogFormat:    "json",
		LogLevel:     "info",
	}
}

func TestConfigValidateWrapsSentinel(t *testing.T) {
	err := Config{}.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
	}
	if err := defaultTestConfig().Validate(); err != nil {
		t.Errorf("Validate(defaults) = %v", err)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	clearConfigEnv(t)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(minimalFile), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("UNDERSTUDY_CONFIG", path)
	c, err := LoadConfig(nil)
	if err != nil || c.Node != "n1" {
		t.Fatalf("LoadConfig(nil) = %+v, %v; want node n1 from UNDERSTUDY_CONFIG", c, err)
	}
	t.Setenv("UNDERSTUDY_CONFIG", filepath.Join(t.TempDir(), "missing.yaml"))
	if _, err := LoadConfig(nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("LoadConfig with a missing file = %v, want an error naming it", err)
	}
}

func TestConfigRedacted(t *testing.T) {
	c := defaultTestConfig()
	c.Etcd.Password = "s3cret"
	r := c.Redacted()
	if r.Etcd.Password != "***" || c.Etcd.Password != "s3cret" {
		t.Errorf("Redacted password %q (original now %q), want *** and the original untouched", r.Etcd.Password, c.Etcd.Password)
	}
	r.Etcd.Endpoints[0] = "changed"
	if c.Etcd.Endpoints[0] == "changed" {
		t.Error("Redacted shares the endpoints slice with the original")
	}
	if got := (Config{}).Redacted().Etcd.Password; got != "" {
		t.Errorf("Redacted of an empty password = %q, want empty", got)
	}
}

func TestConfigNewLogger(t *testing.T) {
	tests := []struct {
		name, format, level string
		wantErr             string
	}{
		{"json", "json", "info", ""},
		{"console debug", "console", "debug", ""},
		{"default", "", "", ""},
		{"bad format", "xml", "info", `log_format: "xml"`},
		{"bad level", "json", "loud", `log_level: "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, err := NewLogger(tt.format, tt.level)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewLogger = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || log == nil {
				t.Fatalf("NewLogger = %v, %v", log, err)
			}
		})
	}
}

func TestConfigEtcdClientTLS(t *testing.T) {
	ca, cert, key := writeTestCerts(t)
	c := defaultTestConfig()
	c.Etcd.Endpoints = []string{"https://127.0.0.1:1"}
	c.Etcd.CACert, c.Etcd.Cert, c.Etcd.Key = ca, cert, key
	cfg, err := c.EtcdClientConfig()
	if err != nil {
		t.Fatalf("EtcdClientConfig: %v", err)
	}
	if cfg.TLS == nil || cfg.TLS.RootCAs == nil {
		t.Fatalf("TLS = %+v, want a config with the CA", cfg.TLS)
	}
	c.Etcd.Cert, c.Etcd.Key = "", ""
	if cfg, err := c.EtcdClientConfig(); err != nil || cfg.TLS == nil {
		t.Fatalf("CA only: %v, TLS %v; want server verification only", err, cfg.TLS)
	}
	c.Etcd.CACert = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := c.EtcdClientConfig(); err == nil || !strings.Contains(err.Error(), "etcd TLS") {
		t.Fatalf("missing CA file: %v, want an etcd TLS error", err)
	}
}

func TestConfigEtcdClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := defaultTestConfig()
	c.Etcd.Endpoints = []string{"http://127.0.0.1:1"} // never dialled: the client connects lazily
	cli, err := c.EtcdClient(ctx)
	if err != nil {
		t.Fatalf("EtcdClient: %v", err)
	}
	if err := cli.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	cancel()
	if _, err := c.EtcdClient(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("EtcdClient with a cancelled ctx = %v, want context.Canceled", err)
	}
}

// writeTestCerts writes a CA and a client certificate signed by it; returns the paths.
func writeTestCerts(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cliKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cliTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "n1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	cliDER, err := x509.CreateCertificate(rand.Reader, cliTmpl, caTmpl, &cliKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", cliDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// FuzzLoadConfigYAML: any file content yields a config or an error, never a panic,
// and a config that loads is valid.
func FuzzLoadConfigYAML(f *testing.F) {
	for _, seed := range []string{
		"", minimalFile, "node: n1\netcd: 3\n", "- a\n", "ttl: 3\n", "etcd: {endpoints: x}\n",
		"a: &x {b: *x}\n", "node: n1\netcd:\n  endpoints: [http://h:1]\nttl: 2s\ndemote_margin: 900ms\n",
		"addresses: 10.0.0.1\n", "? [a, b]\n: c\n", "node: !!binary aGVsbG8=\n", "ttl: 1e400\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := loadConfig(nil, "fuzz.yaml", data)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("loaded config does not validate: %v", verr)
			}
		}
	})
}
