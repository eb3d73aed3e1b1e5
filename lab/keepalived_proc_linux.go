//go:build linux

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

func (b *keepalivedBench) startService(node string) error {
	h, err := b.o.Net.Node(node)
	if err != nil {
		return err
	}
	argv := []string{b.o.Binary, "demo-service", "--listen", net.JoinHostPort("0.0.0.0", strconv.Itoa(b.o.Port))}
	env := []string{"UNDERSTUDY_ROLE=keepalived", "UNDERSTUDY_NODE=" + node}
	return b.procs.Start("service-"+node, h.NS, argv, env, b.file(node, "-service.log"))
}

// startKeepalived runs keepalived in the foreground in node's namespace, logging to our
// file only (no syslog), with its own pid files (never /run's defaults: several runs and
// nodes share this machine). Pid files a killed instance left are removed first: one
// naming a pid that was reused would make keepalived think it already runs.
func (b *keepalivedBench) startKeepalived(node string) error {
	h, err := b.o.Net.Node(node)
	if err != nil {
		return err
	}
	pid, vrrpPid := b.file(node, ".pid"), b.file(node, "-vrrp.pid")
	for _, f := range []string{pid, vrrpPid} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("lab: keepalived: remove stale pid file: %w", err)
		}
	}
	argv := []string{b.exe, "--dont-fork", "--log-console", "--no-syslog", "--vrrp",
		"-f", b.file(node, ".conf"), "-p", pid, "-r", vrrpPid}
	return b.procs.Start("keepalived-"+node, h.NS, argv, nil, b.file(node, ".log"))
}

// keepalivedStateRE matches keepalived's state transitions, e.g.
// "(lab) Entering MASTER STATE" or "(lab) Entering BACKUP STATE (init)".
var keepalivedStateRE = regexp.MustCompile(`\(` + keepalivedInstance + `\) Entering ([A-Z]+) STATE`)

// keepalivedState is the state node's keepalived last logged since NetnsProcs last
// started it ("" when none yet, or when it is not running). The log is how an operator
// sees it too; keepalived writes each line at once.
func (b *keepalivedBench) keepalivedState(node string) (string, error) {
	if b.procs.PID("keepalived-"+node) == 0 {
		return "", nil
	}
	text, err := os.ReadFile(b.file(node, ".log"))
	if err != nil {
		return "", fmt.Errorf("lab: keepalived: read log of %s: %w", node, err)
	}
	if i := bytes.LastIndex(text, []byte("=== lab: starting ")); i >= 0 {
		text = text[i:]
	}
	m := keepalivedStateRE.FindAllSubmatch(text, -1)
	if len(m) == 0 {
		return "", nil
	}
	return string(m[len(m)-1][1]), nil
}

// killKeepalived SIGKILLs node's keepalived and its VRRP child together, through their
// process group (NetnsProcs makes the parent a group leader, and keepalived does not
// change its child's group). Killing the parent alone is not a crash: keepalived sets
// PDEATHSIG SIGTERM on its child, which then stops gracefully, drops the VIP and sends
// priority 0, like the stop mode.
func (b *keepalivedBench) killKeepalived(node string) error {
	name := "keepalived-" + node
	pid := b.procs.PID(name)
	done, err := b.procs.Exited(name)
	if err != nil || pid == 0 {
		return fmt.Errorf("%w: %s", ErrNodeStopped, name)
	}
	if err := unix.Kill(-pid, unix.SIGKILL); err != nil {
		return fmt.Errorf("lab: keepalived: kill process group %d of %s: %w", pid, node, err)
	}
	t := time.NewTimer(reapTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("lab: keepalived: %s (pid %d) not reaped %s after SIGKILL", name, pid, reapTimeout)
	}
}

// stopKeepalived sends SIGTERM to node's keepalived and waits for it to exit (SIGKILL
// after stopTimeout).
func (b *keepalivedBench) stopKeepalived(node string) error {
	name := "keepalived-" + node
	proc, err := b.procs.running(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	_, err = signalAndWait(ctx, name, proc, syscall.SIGTERM)
	return err
}

// logTails logs the end of every keepalived log, for a failed run.
func (b *keepalivedBench) logTails() {
	for _, node := range b.o.Nodes {
		text, err := os.ReadFile(b.file(node, ".log"))
		if err != nil {
			continue
		}
		if len(text) > 3000 {
			text = text[len(text)-3000:]
		}
		b.o.Log.Warn("keepalived log (tail)", zap.String("node", node), zap.String("log", string(text)))
	}
}

// close stops every process, then SIGKILLs any keepalived VRRP child still running
// with one of our configurations (it is not NetnsProcs' child), removes the VIP where it
// is left, and the directory if it was ours. Its own bounded context: it runs also when
// the caller's ended.
func (b *keepalivedBench) close() error {
	errs := []error{b.procs.Close()}
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	var confs []string
	for _, node := range b.o.Nodes {
		confs = append(confs, b.file(node, ".conf"))
	}
	errs = append(errs, killLeftovers(ctx, confs))
	for _, node := range b.o.Nodes {
		errs = append(errs, b.dropVIP(ctx, node))
	}
	b.hc.CloseIdleConnections()
	if b.tempDir {
		errs = append(errs, os.RemoveAll(b.o.Dir))
	}
	return errors.Join(errs...)
}

// dropVIP removes the VIP from node's eth0 if it is there.
func (b *keepalivedBench) dropVIP(ctx context.Context, node string) error {
	h, err := b.o.Net.Node(node)
	if err != nil {
		return err
	}
	addrs, err := b.o.Net.Addrs(ctx, h.NS)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if a == b.o.VIP+"/24" {
			return ipCmd(ctx, "-n", h.NS, "addr", "del", a, "dev", "eth0")
		}
	}
	return nil
}
