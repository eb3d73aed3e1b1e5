package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/understudy-ha/understudy/fence"
	"github.com/understudy-ha/understudy/fence/iscsi"
)

// Exit codes of the fence-agents API (doc/FenceAgentAPI.md in ClusterLabs/fence-agents).
// They differ from the CLI's: 2 is "off" for status, never "usage", so every failure,
// bad input included, exits 1.
const (
	agentExitOK   = 0
	agentExitFail = 1
	agentExitOff  = 2
)

// defaultKeyFile is where `on` records the key it registered and `off` reads this node's
// own key, like fence_scsi's /var/run/cluster/fence_scsi.key: Pacemaker runs `on`
// (unfencing) on the node itself, and the device's parameters are the same on every node.
// Under /run it goes with a reboot, after which the node must be unfenced again anyway.
const defaultKeyFile = "/run/understudy/fence-agent.key"

// localKey is this node's own key, which off preempts with: local_key, local_node_id, or
// the key that this node's last `on` recorded in key_file.
func (c *agentConfig) localKey() (fence.Key, error) {
	switch k, id := c.opts["local_key"], c.opts["local_node_id"]; {
	case k != "" && id != "":
		return 0, errors.New("fence-agent: options local_key and local_node_id contradict each other: give one")
	case k != "":
		key, err := fence.ParseKey(k)
		if err != nil {
			return 0, fmt.Errorf("fence-agent: option local_key: %w", err)
		}
		return key, nil
	case id != "":
		return c.idKey("local_node_id", id)
	}
	path := c.opts["key_file"]
	if path == "" {
		return 0, errors.New("fence-agent: this node's own key is unknown: give local_node_id, local_key or key_file")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("fence-agent: read this node's key from key_file (written by action on; give local_node_id or local_key otherwise): %w", err)
	}
	key, err := fence.ParseKey(string(b))
	if err != nil {
		return 0, fmt.Errorf("fence-agent: key_file %s: %w", path, err)
	}
	return key, nil
}

// writeKeyFile records key for later `off` runs (write and rename: never half a key).
func writeKeyFile(path string, key fence.Key) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("fence-agent: write key_file %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(key.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("fence-agent: write key_file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("fence-agent: write key_file %s: %w", path, err)
	}
	return nil
}

// checkDevices validates the devices option without opening anything.
func (c *agentConfig) checkDevices() error {
	if len(c.devices) == 0 {
		return errors.New("fence-agent: option devices: missing: give /dev/... or iscsi://host[:port]/<iqn>/<lun>, comma separated")
	}
	if len(c.devices) > 256 { // one ISID index per iSCSI session (ISIDFromNodeIDIndex)
		return fmt.Errorf("fence-agent: option devices: %d devices, at most 256", len(c.devices))
	}
	for _, d := range c.devices {
		switch {
		case strings.HasPrefix(d, "iscsi://"):
			if _, err := iscsi.ParseURL(d); err != nil {
				return fmt.Errorf("fence-agent: option devices: %w", err)
			}
		case !filepath.IsAbs(d):
			return fmt.Errorf("fence-agent: option devices: %q: want /dev/... or iscsi://host[:port]/<iqn>/<lun>", d)
		}
	}
	return nil
}

// agentLU is one entry of devices, opened.
type agentLU struct {
	dev   *fence.Device
	iscsi bool // the paths are this process's own new iSCSI sessions
}

// openLUs opens every device through the same path openers as `understudy fence`. The
// ISID index runs over all iscsi:// entries, so sessions of one run to one target (one
// per LUN) do not reinstate each other. The close function has its own bound.
func (c *agentConfig) openLUs(ctx context.Context, log *zap.Logger) ([]agentLU, func(), error) {
	var lus []agentLU
	var closers []func()
	closeAll := func() {
		for _, cl := range closers {
			cl()
		}
	}
	for i, d := range c.devices {
		if strings.HasPrefix(d, "iscsi://") {
			t, closeFn, err := openISCSIPath(ctx, d, c.opts["initiator_name"], i)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("fence-agent: open device %d: %w", i, err)
			}
			closers = append(closers, closeFn)
			target, _ := iscsi.ParseURL(d) // checked by checkDevices; String() hides a CHAP secret
			lus = append(lus, agentLU{dev: &fence.Device{Name: target.String(), Paths: []fence.Transport{t}, Log: log}, iscsi: true})
			continue
		}
		ts, err := fence.OpenPaths(d)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("fence-agent: open device %s: %w", d, err)
		}
		closers = append(closers, func() { _ = fence.CloseAll(ts) })
		lus = append(lus, agentLU{dev: &fence.Device{Name: d, Paths: ts, Log: log}})
	}
	return lus, closeAll, nil
}

// agentLogger writes the fence library's warnings (every message with verbose) to w.
func agentLogger(w io.Writer, verbose bool) *zap.Logger {
	level := zapcore.WarnLevel
	if verbose {
		level = zapcore.DebugLevel
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = "" // Pacemaker's log has the time
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), level))
}

// newFenceAgentCmd returns `understudy fence-agent`: the fence-agents calling convention
// over the fence package, for Pacemaker (deploy/pacemaker/fence_understudy wraps it).
func newFenceAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fence-agent [--name=value ...]",
		Short: "Fence agent for Pacemaker: SCSI-3 persistent reservation fencing (fence-agents API)",
		Long: `fence-agent speaks the fence-agents calling convention, as fence_scsi does, so that
Pacemaker (through deploy/pacemaker/fence_understudy) fences with understudy's keys.

Options come as name=value lines on stdin (blank lines and # comments ignored) or, when
there are arguments, as --name=value options. Unknown options are errors.

  action   on | off | status | monitor | metadata | validate-all (default off)
  plug     node id of the node to act on (port, or nodename, are accepted for it)
  devices  LUNs, comma separated: /dev/... or iscsi://host[:port]/<iqn>/<lun>
  cluster  cluster name; key = first 4 bytes of SHA-256(cluster) + node id
  key      the key itself, instead of plug + cluster

on registers the key on every path and reserves if nobody does (unfence), off preempts
the key and verifies on every path that it is gone, using this node's own key
(local_node_id, local_key, or the one on recorded in key_file). Run action=metadata for
every option. Exit codes: 0 success (status: on), 1 failure, 2 status off.`,
		Example: `  printf 'action=status\nplug=2\ncluster=prod\ndevices=/dev/mapper/shared\n' | understudy fence-agent
  understudy fence-agent --action=off --plug=2 --local-node-id=1 --cluster=prod --devices=/dev/sdb,/dev/sdc
  understudy fence-agent -o metadata`,
		// The options follow fence-agents (--plug, -n 2, names with - or _), not cobra.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if slices.Contains(args, "--help") || slices.Contains(args, "-h") {
				return cmd.Help()
			}
			return runFenceAgent(cmd.Context(), args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	return cmd
}

// runFenceAgent runs one invocation and maps its outcome to the fence-agents exit codes:
// nil (0), an exitError with code 2 and no error (status off), or code 1 for any failure.
func runFenceAgent(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := fenceAgent(ctx, args, stdin, stdout, stderr)
	var ee *exitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.code == agentExitOff && ee.err == nil:
		return err
	}
	return &exitError{code: agentExitFail, err: err}
}

func fenceAgent(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var opts map[string]string
	var err error
	if len(args) > 0 { // as fence-agents: arguments, or else stdin
		opts, err = parseAgentArgs(args)
	} else {
		opts, err = parseAgentStdin(stdin)
	}
	if err != nil {
		return err
	}
	c, err := newAgentConfig(opts)
	if err != nil {
		return err
	}
	if c.action == "metadata" {
		return writeAgentMetadata(stdout)
	}
	if err := c.checkDevices(); err != nil {
		return err
	}
	log := agentLogger(stderr, c.verbose)
	if c.action == "monitor" {
		return c.withLUs(ctx, log, func(ctx context.Context, lus []agentLU) error { return monitorLUs(ctx, lus, stdout) })
	}
	key, err := c.targetKey()
	if err != nil {
		return err
	}
	switch c.action {
	case "validate-all":
		if c.opts["local_key"] != "" || c.opts["local_node_id"] != "" {
			_, err = c.localKey()
		}
		return err
	case "on":
		return c.withLUs(ctx, log, func(ctx context.Context, lus []agentLU) error { return c.on(ctx, lus, key, stdout) })
	case "status":
		return c.withLUs(ctx, log, func(ctx context.Context, lus []agentLU) error { return statusLUs(ctx, lus, key, stdout) })
	}
	return c.off(ctx, log, key, stdout)
}

// withLUs opens the devices and runs fn, all bounded by the timeout option.
func (c *agentConfig) withLUs(ctx context.Context, log *zap.Logger, fn func(context.Context, []agentLU) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	lus, closeFn, err := c.openLUs(ctx, log)
	if err != nil {
		return err
	}
	defer closeFn()
	return fn(ctx, lus)
}

// on unfences key on every device, then records it as this node's key for later offs.
func (c *agentConfig) on(ctx context.Context, lus []agentLU, key fence.Key, out io.Writer) error {
	var errs []error
	for _, lu := range lus {
		errs = append(errs, lu.dev.Unfence(ctx, key))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fence-agent: on: register %v: %w", key, err)
	}
	if err := writeKeyFile(c.opts["key_file"], key); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "Success: registered %v on %d device(s)\n", key, len(lus))
	return err
}

// off waits delay, then fences victim on every device (all are tried: a fence that fails
// on one LUN still cuts the others off) with this node's own key.
func (c *agentConfig) off(ctx context.Context, log *zap.Logger, victim fence.Key, out io.Writer) error {
	self, err := c.localKey()
	if err != nil {
		return err
	}
	if self == victim {
		return fmt.Errorf("fence-agent: off: %v is this node's own key: %w", victim, fence.ErrSelfFence)
	}
	if c.delay > 0 { // documented option, bounded by ctx (Pacemaker's timeout sends SIGTERM)
		t := time.NewTimer(c.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("fence-agent: off: during delay: %w", ctx.Err())
		}
	}
	return c.withLUs(ctx, log, func(ctx context.Context, lus []agentLU) error {
		var errs []error
		for _, lu := range lus {
			errs = append(errs, fenceLU(ctx, lu, self, victim))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("fence-agent: off: fence %v: %w", victim, err)
		}
		_, err := fmt.Fprintf(out, "Success: fenced %v on %d device(s), verified on every path\n", victim, len(lus))
		return err
	})
}

// fenceLU fences victim on one LU. This node's key must still be registered: a node that
// was itself fenced must not come back by registering again and fencing the winner (the
// fence package's rule: nothing re-registers behind a fence). On iscsi:// devices this
// process's session is a new I_T nexus, from which the target accepts PREEMPT only after
// it registered, as `understudy fence preempt --register` does.
func fenceLU(ctx context.Context, lu agentLU, self, victim fence.Key) error {
	regs, err := lu.dev.Keys(ctx)
	if err != nil {
		return err
	}
	if !regs.Has(self) {
		return fmt.Errorf("fence-agent: device %s: this node's key %v is not registered: it was fenced or never unfenced (action on), and a fenced node must not fence others",
			lu.dev.Name, self)
	}
	if lu.iscsi {
		if err := lu.dev.Register(ctx, self); err != nil {
			return err
		}
	}
	return lu.dev.Fence(ctx, self, victim)
}

// statusLUs reports ON (exit 0) when key is registered through any path, OFF (exit 2)
// only when every path of every device answered without it.
func statusLUs(ctx context.Context, lus []agentLU, key fence.Key, out io.Writer) error {
	var errs []error
	for _, lu := range lus {
		for i := range lu.dev.Paths {
			r, err := lu.dev.KeysOnPath(ctx, i)
			if err == nil && r.Has(key) {
				_, err = fmt.Fprintln(out, "Status: ON")
				return err
			}
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fence-agent: status of %v: %w", key, err)
	}
	if _, err := fmt.Fprintln(out, "Status: OFF"); err != nil {
		return err
	}
	return &exitError{code: agentExitOff}
}

// monitorLUs succeeds when every path of every device answers READ KEYS: off verifies
// through every path, so one that does not answer would fail a fence.
func monitorLUs(ctx context.Context, lus []agentLU, out io.Writer) error {
	var errs []error
	paths := 0
	for _, lu := range lus {
		for i := range lu.dev.Paths {
			_, err := lu.dev.KeysOnPath(ctx, i)
			errs = append(errs, err)
			paths++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fence-agent: monitor: %w", err)
	}
	_, err := fmt.Fprintf(out, "Success: %d device(s), %d path(s) answer\n", len(lus), paths)
	return err
}
