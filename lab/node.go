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

// node is one lab node: its files, and its agent process while one runs.
type node struct {
	name    string
	dir     string // <farm>/nodes/<name>
	config  string // agent config file
	logPath string // agent stdout+stderr, appended across restarts
	health  string // 127.0.0.1:<port> of the agent's health endpoint

	proc *process // guarded by Farm.mu; nil when never started or reaped
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
}

type etcdConfig struct {
	Endpoints []string `yaml:"endpoints"`
}

// newNode prepares a node's directory and config file. The health port is chosen once,
// so a restarted node keeps its health URL like a real server keeps its address.
func (f *Farm) newNode(name string) (*node, error) {
	dir := filepath.Join(f.dir, "nodes", name)
	n := &node{name: name, dir: dir, config: filepath.Join(dir, "agent.yaml"),
		logPath: filepath.Join(dir, "agent.log")}
	ports, err := freePorts(1)
	if err != nil {
		return nil, fmt.Errorf("lab: node %s: %w", name, err)
	}
	n.health = "127.0.0.1:" + strconv.Itoa(ports[0])
	cfg := agentConfig{
		Node: name, Cluster: f.opts.Cluster, Etcd: etcdConfig{Endpoints: f.etcd.Endpoints()},
		TTL: f.opts.TTL.String(), HealthListen: n.health, StateDir: filepath.Join(dir, "state"),
		LogFormat: f.opts.LogFormat,
	}
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

// start runs `understudy agent --config FILE` for the node. The waiter goroutine is owned
// by the farm: Close (or Kill/Stop) waits for done.
func (f *Farm) start(n *node) error {
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("lab: node %s: open log: %w", n.name, err)
	}
	_, _ = fmt.Fprintf(logFile, "=== lab: starting agent %s at %s\n", n.name, time.Now().Format(time.RFC3339Nano))
	cmd, err := startProcess([]string{f.opts.Binary, "agent", "--config", n.config}, logFile)
	if err != nil {
		_ = logFile.Close()
		return fmt.Errorf("lab: node %s: start agent %s: %w", n.name, f.opts.Binary, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	n.proc = p
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return nil
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
