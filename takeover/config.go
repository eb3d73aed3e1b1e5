package takeover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/understudy-ha/understudy/lease"
)

// Config is the agent's configuration. Sources, later ones winning: defaults, the
// YAML file (--config or UNDERSTUDY_CONFIG), UNDERSTUDY_* environment variables
// (key with "." -> "_", upper case: UNDERSTUDY_ETCD_ENDPOINTS; lists comma
// separated), flags. Keys are the mapstructure tags below.
type Config struct {
	Node    string `mapstructure:"node" yaml:"node"`
	Cluster string `mapstructure:"cluster" yaml:"cluster"`
	// Prefix is the etcd key prefix; LoadConfig fills the default lease.Prefix(Cluster).
	Prefix string     `mapstructure:"prefix" yaml:"prefix"`
	Etcd   EtcdConfig `mapstructure:"etcd" yaml:"etcd"`
	// TTL of the node's etcd lease: whole seconds, at least 1s (default 3s).
	TTL time.Duration `mapstructure:"ttl" yaml:"ttl"`
	// DemoteMargin: an active node demotes itself when its last acknowledged
	// keepalive is older than TTL - DemoteMargin. Default TTL/3; must be > 0 and
	// < TTL/2, so that a node never demotes before it missed more than one keepalive
	// (sent every TTL/3) and still has at least TTL/3 to stop before etcd could give the
	// role away. LoadConfig fills the default.
	DemoteMargin time.Duration `mapstructure:"demote_margin" yaml:"demote_margin"`
	// HealthListen is the health endpoint's host:port ("" disables it).
	HealthListen string `mapstructure:"health_listen" yaml:"health_listen"`
	// HealthTLSCertFile and HealthTLSKeyFile (PEM) make the health endpoint serve TLS
	// 1.2+ only; both or neither. HealthTLSClientCAFile additionally requires client
	// certificates signed by one of its CAs. Read once at start (restart to renew).
	HealthTLSCertFile     string `mapstructure:"health_tls_cert_file" yaml:"health_tls_cert_file"`
	HealthTLSKeyFile      string `mapstructure:"health_tls_key_file" yaml:"health_tls_key_file"`
	HealthTLSClientCAFile string `mapstructure:"health_tls_client_ca_file" yaml:"health_tls_client_ca_file"`
	// HealthTLSPeerCAFile verifies the other nodes' TLS health endpoints when fast
	// detection probes them (this node presents its own health certificate).
	HealthTLSPeerCAFile string   `mapstructure:"health_tls_peer_ca_file" yaml:"health_tls_peer_ca_file"`
	StateDir            string   `mapstructure:"state_dir" yaml:"state_dir"`
	Addresses           []string `mapstructure:"addresses" yaml:"addresses"` // this node's IPs, for status
	LogFormat           string   `mapstructure:"log_format" yaml:"log_format"`
	LogLevel            string   `mapstructure:"log_level" yaml:"log_level"`
	// HeartbeatListen is the ip:port this node sends and receives fast-detection
	// heartbeats on ("" disables: the node can neither hold nor detect fast roles
	// early; it still takes them over after lease expiry).
	HeartbeatListen string `mapstructure:"heartbeat_listen" yaml:"heartbeat_listen"`
	// HeartbeatKeyFile holds the cluster key that authenticates heartbeats (at least
	// 16 bytes; the same file on every node). Required with HeartbeatListen.
	HeartbeatKeyFile string `mapstructure:"heartbeat_key_file" yaml:"heartbeat_key_file"`
}

// EtcdConfig is how the agent reaches etcd.
type EtcdConfig struct {
	Endpoints []string `mapstructure:"endpoints" yaml:"endpoints"`
	// TLS: none; ca_cert only (server verification, e.g. with a password); or all three.
	CACert      string        `mapstructure:"ca_cert" yaml:"ca_cert"`
	Cert        string        `mapstructure:"cert" yaml:"cert"`
	Key         string        `mapstructure:"key" yaml:"key"`
	Username    string        `mapstructure:"username" yaml:"username"`
	Password    string        `mapstructure:"password" yaml:"password"` // never logged; no flag (ps would show it)
	DialTimeout time.Duration `mapstructure:"dial_timeout" yaml:"dial_timeout"`
}

// option is one configuration key: its default and its flag ("" = no flag).
type option struct {
	key, flag string
	def       any // string, []string or time.Duration: also the flag's type
	usage     string
}

// options is the single list of keys: defaults, env bindings, flags and the
// unknown-key check all come from it.
var options = []option{
	{"node", "node", "", `this node's name, "` + nameRule + `" (required)`},
	{"cluster", "cluster", "default", "cluster name: part of the etcd prefix and of the SCSI fence keys"},
	{"prefix", "prefix", "", `etcd key prefix (default "/understudy/<cluster>/")`},
	{"etcd.endpoints", "etcd-endpoints", []string{}, "etcd client URLs, comma separated (required)"},
	{"etcd.ca_cert", "etcd-ca-cert", "", "CA certificate file to verify etcd's certificate (TLS)"},
	{"etcd.cert", "etcd-cert", "", "client certificate file for etcd (mTLS: with etcd.key and etcd.ca_cert)"},
	{"etcd.key", "etcd-key", "", "client key file for etcd (mTLS: with etcd.cert and etcd.ca_cert)"},
	{"etcd.username", "etcd-username", "", "etcd user (its password: etcd.password in the file or UNDERSTUDY_ETCD_PASSWORD)"},
	{"etcd.password", "", "", `etcd password, never logged or printed; no flag (ps would show it): set it in the file or "UNDERSTUDY_ETCD_PASSWORD"`},
	{"etcd.dial_timeout", "etcd-dial-timeout", defaultDialTimeout, "how long to wait for a connection to etcd"},
	{"ttl", "ttl", 3 * time.Second, "the node's etcd lease TTL: whole seconds, at least 1s"},
	{"demote_margin", "demote-margin", time.Duration(0), "an active node demotes itself when its last acknowledged keepalive is older than ttl minus this; less than ttl/2 (0: the default, ttl/3)"},
	{"health_listen", "health-listen", ":7480", `health endpoint host:port ("" disables it)`},
	{"health_tls_cert_file", "health-tls-cert-file", "", "PEM certificate of the health endpoint: with health_tls_key_file it serves TLS 1.2+ only, otherwise plain HTTP (with heartbeat_listen also set health_tls_peer_ca_file)"},
	{"health_tls_key_file", "health-tls-key-file", "", "PEM private key of health_tls_cert_file (both or neither)"},
	{"health_tls_client_ca_file", "health-tls-client-ca-file", "", "PEM CA certificates: when set, the health endpoint requires and verifies client certificates signed by them (needs health_tls_cert_file)"},
	{"health_tls_peer_ca_file", "health-tls-peer-ca-file", "", "PEM CA certificates that signed the other nodes' health certificates: fast detection's second check verifies TLS peers with them and presents this node's health certificate (required with heartbeat_listen and health_tls_cert_file)"},
	{"state_dir", "state-dir", "/var/lib/understudy", "directory for this node's local state, an absolute path (iSCSI storage keeps its devices there)"},
	{"addresses", "addresses", []string{}, "this node's IP addresses, shown in status"},
	{"log_format", "log-format", "json", `log format: "json" or "console"`},
	{"log_level", "log-level", "info", `log level: "debug", "info", "warn" or "error"`},
	{"heartbeat_listen", "heartbeat-listen", "", `this node's ip:port for fast-detection heartbeats, as peers reach it ("" disables: the node neither sends nor watches heartbeats, and takes fast roles over only after lease expiry)`},
	{"heartbeat_key_file", "heartbeat-key-file", "", "file with the cluster key that authenticates heartbeats: at least 16 bytes, the same on every node (required with heartbeat_listen)"},
}

// configSections are the keys that hold a mapping of further keys.
var configSections = map[string]bool{"etcd": true}

const defaultDialTimeout = 5 * time.Second

// nameRule is the syntax of node and cluster names (etcd key parts, fence-agent args),
// the same rule lease applies to node names everywhere.
const nameRule = lease.NodeNameRule

var nameRE = regexp.MustCompile("^" + nameRule + "$")

// BindFlags defines the agent's configuration flags on fs: --config plus one per key,
// except the etcd password (a flag would show it in ps).
func BindFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "agent configuration file (YAML; env UNDERSTUDY_CONFIG)")
	for _, o := range options {
		if o.flag == "" {
			continue
		}
		switch d := o.def.(type) {
		case string:
			fs.String(o.flag, d, o.usage)
		case []string:
			fs.StringSlice(o.flag, d, o.usage)
		case time.Duration:
			fs.Duration(o.flag, d, o.usage)
		}
	}
}

// LoadConfig reads the configuration from the file named by --config in fs (or
// UNDERSTUDY_CONFIG), the environment and the flags of fs that BindFlags defined and
// the user set (fs may be nil), fills the derived defaults (prefix, demote_margin)
// and validates it. Unknown keys in the file are errors naming the key.
func LoadConfig(fs *pflag.FlagSet) (Config, error) {
	path := os.Getenv("UNDERSTUDY_CONFIG")
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
			path = f.Value.String()
		}
	}
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return Config{}, fmt.Errorf("takeover: config file: %w", err)
		}
	}
	return loadConfig(fs, path, data)
}

// loadConfig is LoadConfig with the file's content given (name is for messages).
func loadConfig(fs *pflag.FlagSet, name string, data []byte) (Config, error) {
	if err := checkConfigKeys(name, data); err != nil {
		return Config{}, err
	}
	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix("understudy")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return Config{}, fmt.Errorf("takeover: config file %s: %w", name, err)
	}
	for _, o := range options {
		v.SetDefault(o.key, o.def)
		if err := v.BindEnv(o.key); err != nil {
			return Config{}, fmt.Errorf("takeover: config: bind env for %s: %w", o.key, err)
		}
		if fs == nil || o.flag == "" {
			continue
		}
		if f := fs.Lookup(o.flag); f != nil {
			if err := v.BindPFlag(o.key, f); err != nil {
				return Config{}, fmt.Errorf("takeover: config: bind flag --%s: %w", o.flag, err)
			}
		}
	}
	var c Config
	hook := mapstructure.ComposeDecodeHookFunc(durationHook, mapstructure.StringToSliceHookFunc(","))
	if err := v.Unmarshal(&c, viper.DecodeHook(hook)); err != nil {
		return Config{}, fmt.Errorf("takeover: config: %w", err)
	}
	c.Etcd.Endpoints = trimAll(c.Etcd.Endpoints)
	c.Addresses = trimAll(c.Addresses)
	if c.Prefix == "" {
		c.Prefix = lease.Prefix(c.Cluster)
	}
	if c.DemoteMargin == 0 {
		c.DemoteMargin = c.TTL / 3
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook decodes durations from strings ("3s") and refuses bare numbers, which
// would silently mean nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		d, err := time.ParseDuration(strings.TrimSpace(data.(string)))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration like \"3s\" or \"500ms\"", data)
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return nil, fmt.Errorf("%v has no unit; write a duration like \"3s\"", data)
	}
	return data, nil
}

func trimAll(ss []string) []string {
	out := ss[:0]
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// checkConfigKeys rejects keys of the file that are not configuration keys (a typo
// must not silently fall back to a default), naming the key and its line.
func checkConfigKeys(name string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("takeover: config file %s: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("takeover: config file %s: line %d: the top level must be a mapping of keys", name, root.Line)
	}
	known := make(map[string]bool, len(options))
	for _, o := range options {
		known[o.key] = true
	}
	var errs []error
	var walk func(m *yaml.Node, prefix string)
	walk = func(m *yaml.Node, prefix string) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, val := m.Content[i], m.Content[i+1]
			if val.Kind == yaml.AliasNode && val.Alias != nil {
				val = val.Alias
			}
			key := prefix + k.Value
			switch {
			case configSections[key] && val.Kind == yaml.MappingNode:
				walk(val, key+".")
			case configSections[key] && val.Tag != "!!null":
				errs = append(errs, fmt.Errorf("line %d: %s: must be a mapping of keys", k.Line, key))
			case configSections[key]:
			case !known[key]:
				errs = append(errs, fmt.Errorf("line %d: unknown key %q", k.Line, key))
			case val.Kind == yaml.MappingNode:
				errs = append(errs, fmt.Errorf("line %d: %s: must be a value, not a mapping", k.Line, key))
			}
		}
	}
	walk(root, "")
	if len(errs) > 0 {
		return fmt.Errorf("takeover: config file %s: %w", name, errors.Join(errs...))
	}
	return nil
}

// Validate checks every field and returns all problems at once (wrapping
// ErrInvalidConfig), each naming the field and what is allowed:
// "ttl: 500ms is below the minimum 1s".
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	checkName := func(field, v string) {
		switch {
		case v == "":
			add("%s: %q is required", field, v)
		case !nameRE.MatchString(v):
			add("%s: %q must match %s (lower case letters, digits, '.', '-')", field, v, nameRule)
		}
	}
	checkName("node", c.Node)
	checkName("cluster", c.Cluster)
	if c.Prefix != "" && (!strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/")) {
		add("prefix: %q must start and end with \"/\"", c.Prefix)
	}
	errs = append(errs, c.Etcd.validate()...)
	switch {
	case c.TTL < time.Second:
		add("ttl: %s is below the minimum 1s", c.TTL)
	case c.TTL%time.Second != 0:
		add("ttl: %s must be a whole number of seconds (etcd leases have 1s granularity)", c.TTL)
	}
	if c.DemoteMargin < 0 || c.DemoteMargin >= c.TTL/2 {
		add("demote_margin: %s must be between 0 (default ttl/3) and half the ttl (%s)", c.DemoteMargin, c.TTL/2)
	}
	if c.HealthListen != "" {
		if _, port, err := net.SplitHostPort(c.HealthListen); err != nil || !validPort(port) {
			add("health_listen: %q is not host:port (e.g. \":7480\" or \"127.0.0.1:7480\"; \"\" disables)", c.HealthListen)
		}
	}
	errs = append(errs, c.validateHealthTLS()...)
	if c.HeartbeatListen != "" {
		if ap, err := netip.ParseAddrPort(c.HeartbeatListen); err != nil || ap.Addr().IsUnspecified() || ap.Port() == 0 {
			add("heartbeat_listen: %q: want this node's ip:port as peers reach it (e.g. \"10.0.0.5:7946\")", c.HeartbeatListen)
		}
		if c.HeartbeatKeyFile == "" {
			add("heartbeat_key_file: required with heartbeat_listen (heartbeats are authenticated)")
		}
	}
	if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
		add("state_dir: %q must be an absolute path", c.StateDir)
	}
	for i, a := range c.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			add("addresses[%d]: %q is not an IP address", i, a)
		}
	}
	if c.LogFormat != "" && c.LogFormat != "json" && c.LogFormat != "console" {
		add("log_format: %q is not one of json, console", c.LogFormat)
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && (n > 0 || p == "0")
}

// validate checks the etcd section; field names carry the "etcd." prefix.
func (e EtcdConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(e.Endpoints) == 0 {
		add("etcd.endpoints: at least one endpoint URL is required (e.g. http://127.0.0.1:2379)")
	}
	for i, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" && u.Path == "" ||
			!map[string]bool{"http": true, "https": true, "unix": true, "unixs": true}[u.Scheme] {
			add("etcd.endpoints[%d]: %q is not an http://, https://, unix:// or unixs:// URL", i, ep)
		}
	}
	if (e.Cert == "") != (e.Key == "") || e.Cert != "" && e.CACert == "" {
		var missing []string
		for _, f := range []struct{ name, v string }{{"etcd.ca_cert", e.CACert}, {"etcd.cert", e.Cert}, {"etcd.key", e.Key}} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
		add("etcd TLS: set ca_cert alone, or ca_cert, cert and key together (missing: %s)", strings.Join(missing, ", "))
	}
	if e.Password != "" && e.Username == "" {
		add("etcd.password: set without etcd.username")
	}
	if e.DialTimeout < 0 {
		add("etcd.dial_timeout: %s must not be negative (0: the default 5s)", e.DialTimeout)
	}
	return errs
}

// Redacted returns a copy safe to print or log: the etcd password is "***".
func (c Config) Redacted() Config {
	c.Etcd.Endpoints = append([]string(nil), c.Etcd.Endpoints...)
	c.Addresses = append([]string(nil), c.Addresses...)
	if c.Etcd.Password != "" {
		c.Etcd.Password = "***"
	}
	return c
}

// EtcdClient connects a client as configured (TLS from the files when set). ctx only
// bounds the setup: the client outlives it (the agent still needs etcd to release its
// claims after its run context is cancelled); the caller closes the client.
func (c Config) EtcdClient(ctx context.Context) (*clientv3.Client, error) {
	cfg, err := c.EtcdClientConfig()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("takeover: etcd client: %w", err)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("takeover: etcd client for %v: %w", c.Etcd.Endpoints, err)
	}
	return cli, nil
}

// EtcdClientConfig is the clientv3 configuration EtcdClient uses, for callers that
// need to adjust it. Its Logger logs warnings and errors in the configured format.
func (c Config) EtcdClientConfig() (clientv3.Config, error) {
	e := c.Etcd
	cfg := clientv3.Config{
		Endpoints:   e.Endpoints,
		DialTimeout: orDefault(e.DialTimeout, defaultDialTimeout),
		Username:    e.Username,
		Password:    e.Password,
	}
	level := "warn" // the client's info messages are noise next to the agent's own
	if c.LogLevel == "error" {
		level = "error"
	}
	if log, err := NewLogger(c.LogFormat, level); err == nil {
		cfg.Logger = log.Named("etcd-client")
	}
	if e.CACert != "" || e.Cert != "" || e.Key != "" {
		tlsInfo := transport.TLSInfo{CertFile: e.Cert, KeyFile: e.Key, TrustedCAFile: e.CACert}
		tlsCfg, err := tlsInfo.ClientConfig()
		if err != nil {
			return clientv3.Config{}, fmt.Errorf("takeover: etcd TLS (ca_cert %q, cert %q, key %q): %w", e.CACert, e.Cert, e.Key, err)
		}
		cfg.TLS = tlsCfg
	}
	return cfg, nil
}

// NewLogger builds the agent's logger: "json" is zap's production encoder (ISO 8601
// times), "console" the development one without stack traces on warnings. Sampling
// is off: the exec resource logs every line of the service's output and none may
// be dropped.
func NewLogger(format, level string) (*zap.Logger, error) {
	lvl, err := parseLogLevel(level)
	if err != nil {
		return nil, err
	}
	var cfg zap.Config
	switch format {
	case "json", "":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("log_format: %q is not one of json, console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	return cfg.Build()
}

func parseLogLevel(s string) (zapcore.Level, error) {
	switch s {
	case "debug", "info", "warn", "error":
		return zapcore.ParseLevel(s)
	case "":
		return zapcore.InfoLevel, nil
	}
	return 0, fmt.Errorf("log_level: %q is not one of debug, info, warn, error", s)
}
