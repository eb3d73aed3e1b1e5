package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// reapTimeout bounds the wait for a SIGKILLed process to be reaped. Only a process stuck
// in uninterruptible sleep survives SIGKILL that long; the lab reports it rather than hang.
const reapTimeout = 10 * time.Second

// node is one lab node: its files, and in Netns mode its host.
type node struct {
	name    string
	dir     string // <farm>/nodes/<name>
	config  string // agent config file
	logPath string // agent stdout+stderr, appended across restarts
	health  string // host:port of the agent's health endpoint
	ns      string // Netns mode: the node's namespace
}

// process is one agent process and the goroutine that waits for it.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process was reaped
	err  error         // exit status; read only after done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// agentConfig is the agent's config file. The keys are takeover.Config's file keys.
type agentConfig struct {
	Node         string     `yaml:"node"`
	Cluster      string     `yaml:"cluster"`
	Etcd         etcdConfig `yaml:"etcd"`
	TTL          string     `yaml:"ttl"`
	HealthListen string     `yaml:"health_listen"`
	StateDir     string     `yaml:"state_dir"`
	LogFormat    string     `yaml:"log_format"`
	Addresses    []string   `yaml:"addresses,omitempty"`
	HBListen     string     `yaml:"heartbeat_listen,omitempty"`
	HBKeyFile    string     `yaml:"heartbeat_key_file,omitempty"`
	// A Secure lab's health endpoints: mutual TLS with the lab's CA, which also
	// verifies the peers in fast detection's probe.
	HealthCert     string `yaml:"health_tls_cert_file,omitempty"`
	HealthKey      string `yaml:"health_tls_key_file,omitempty"`
	HealthClientCA string `yaml:"health_tls_client_ca_file,omitempty"`
	HealthPeerCA   string `yaml:"health_tls_peer_ca_file,omitempty"`
}

type etcdConfig struct {
	Endpoints []string `yaml:"endpoints,omitempty"`
	CACert    string   `yaml:"ca_cert,omitempty"`
	Cert      string   `yaml:"cert,omitempty"`
	Key       string   `yaml:"key,omitempty"`
}

// newNode prepares a node's directory and config file. The health port is chosen once,
// so a restarted node keeps its health URL like a real server keeps its address.
func (f *Farm) newNode(ctx context.Context, name string) (*node, error) {
	dir := filepath.Join(f.dir, "nodes", name)
	n := &node{name: name, dir: dir, config: filepath.Join(dir, "agent.yaml"),
		logPath: filepath.Join(dir, "agent.log")}
	cfg := agentConfig{
		Node: name, Cluster: f.opts.Cluster,
		Etcd: etcdConfig{Endpoints: f.endpoints, CACert: f.etcdCreds.CACert, Cert: f.etcdCreds.Cert, Key: f.etcdCreds.Key},
		TTL:  f.opts.TTL.String(), StateDir: filepath.Join(dir, "state"), LogFormat: f.opts.LogFormat,
	}
	if f.opts.Netns {
		h, err := f.net.AddNode(ctx, name)
		if err != nil {
			return nil, err
		}
		n.ns, n.health = h.NS, h.Ctl+":7480"
		cfg.Addresses = []string{h.Addr, h.Ctl, h.SAN}
		// Heartbeats on the client network, the second check on the control network's
		// health endpoint: two paths, as the design asks of fast detection.
		cfg.HBListen, cfg.HBKeyFile = h.Addr+":7946", filepath.Join(f.dir, "heartbeat.key")
		if err := f.healthTLS(name, h.Ctl, &cfg); err != nil {
			return nil, err
		}
	} else {
		ports, err := freePorts(1)
		if err != nil {
			return nil, fmt.Errorf("lab: node %s: %w", name, err)
		}
		n.health = "127.0.0.1:" + strconv.Itoa(ports[0])
	}
	cfg.HealthListen = n.health
	text, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("lab: node %s: encode config: %w", name, err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: node %s: %w", name, err)
	}
	if err := os.WriteFile(n.config, text, 0o600); err != nil {
		return nil, fmt.Errorf("lab: node %s: write config: %w", name, err)
	}
	return n, nil
}

// signalAndWait sends sig to the agent and waits until it is reaped; if ctx ends first it
// escalates to SIGKILL. It returns the time the first signal was sent.
func signalAndWait(ctx context.Context, name string, p *process, sig syscall.Signal) (time.Time, error) {
	sent := time.Now()
	if p.exited() {
		return sent, nil
	}
	if err := signalProcess(p.cmd.Process.Pid, sig); err != nil && !p.exited() {
		return sent, fmt.Errorf("lab: node %s: signal %v to pid %d: %w", name, sig, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return sent, nil
	case <-ctx.Done():
	}
	if sig != syscall.SIGKILL {
		_ = signalProcess(p.cmd.Process.Pid, syscall.SIGKILL)
	}
	t := time.NewTimer(reapTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return sent, nil
	case <-t.C:
		return sent, fmt.Errorf("lab: node %s: pid %d not reaped %s after SIGKILL", name, p.cmd.Process.Pid, reapTimeout)
	}
}
