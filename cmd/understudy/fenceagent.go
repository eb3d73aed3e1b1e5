package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// agentOption is one option of the agent, by its stdin name.
type agentOption struct {
	name    string
	alias   string // older name accepted too (port for plug, option for action)
	short   byte   // getopt letter on the command line, 0 = none
	boolean bool
	def     string
	hidden  bool // passed by Pacemaker itself: accepted, not in the metadata
	help    string
}

// agentOptions is the one list of options: the parsers, validate-all and the metadata all
// come from it. Unknown options are errors (see docs/fence-agent.md for why).
var agentOptions = []agentOption{
	{name: "action", alias: "option", short: 'o', def: "off", help: "Fencing action: on (unfence: register the key), off (fence: preempt the key, verify), status, monitor, metadata, validate-all"},
	{name: "plug", alias: "port", short: 'n', help: "Node id of the node to act on (decimal, >= 1): its key is the cluster hash + node id. Map node names to ids with pcmk_host_map. Ignored when key is given"},
	{name: "devices", short: 'd', help: "Comma separated LUNs: /dev/... (a dm-multipath device stands for all its paths) or iscsi://host[:port]/<iqn>/<lun>"},
	{name: "cluster", short: 'c', help: "understudy cluster name: the high 4 bytes of every key. Required to derive keys from node ids"},
	{name: "key", short: 'k', help: "Key of the node to act on, hex (0x6754af9600000002); overrides plug"},
	{name: "local_node_id", help: "This node's id, whose key off preempts with (default: the key in key_file)"},
	{name: "local_key", help: "This node's key, hex (default: the key in key_file)"},
	{name: "key_file", def: defaultKeyFile, help: "on records the key it registered here; off reads this node's own key from it. Empty: not used"},
	{name: "initiator_name", def: defaultCLIInitiator, help: "iSCSI initiator name for iscsi:// devices"},
	{name: "timeout", def: "30", help: "Seconds the action may take (after delay)"},
	{name: "delay", def: "0", help: "Seconds to wait before off, so that one side of a fence race wins"},
	{name: "verbose", short: 'v', boolean: true, help: "Log reservation changes and retries to stderr"},
	{name: "nodename", hidden: true, help: "Name of the node to act on, as Pacemaker passes it: used as plug when there is no plug"},
	{name: "nodeid", hidden: true, help: "Corosync node id of the node to act on, as Pacemaker passes it: not used (keys come from plug)"},
}

// lookupAgentOption finds an option by stdin or long name ('-' and '_' are the same).
func lookupAgentOption(name string) (agentOption, bool) {
	name = strings.ReplaceAll(name, "-", "_")
	for _, o := range agentOptions {
		if name == o.name || (o.alias != "" && name == o.alias) {
			return o, true
		}
	}
	return agentOption{}, false
}

func unknownOption(name, where string) error {
	var known []string
	for _, o := range agentOptions {
		known = append(known, o.name)
	}
	return fmt.Errorf("fence-agent: unknown option %q %s (known: %s)", name, where, strings.Join(known, ", "))
}

// maxAgentInput bounds stdin: options are a few hundred bytes, and a runaway writer must
// not make the agent buffer without end.
const maxAgentInput = 1 << 20

// parseAgentStdin reads the stdin convention: one name=value per line, blank lines and
// lines starting with # ignored, whitespace around the line and double quotes around the
// value stripped, the last of repeated names winning. Names are canonical in the result.
func parseAgentStdin(r io.Reader) (map[string]string, error) {
	opts := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, maxAgentInput))
	sc.Buffer(make([]byte, 0, 4096), maxAgentInput)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("fence-agent: stdin line %d %q: want name=value", n, line)
		}
		o, ok := lookupAgentOption(name)
		if !ok {
			return nil, unknownOption(name, fmt.Sprintf("on stdin line %d", n))
		}
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		opts[o.name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fence-agent: read stdin: %w", err)
	}
	return opts, nil
}

// parseAgentArgs reads command-line options, getopt style: --name=value, --name value,
// -x value, -xvalue; boolean options take no value (--verbose, -v).
func parseAgentArgs(args []string) (map[string]string, error) {
	opts := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var o agentOption
		var value string
		var hasValue, ok bool
		switch {
		case strings.HasPrefix(a, "--") && len(a) > 2:
			var name string
			name, value, hasValue = strings.Cut(a[2:], "=")
			if o, ok = lookupAgentOption(name); !ok {
				return nil, unknownOption("--"+name, "on the command line")
			}
		case len(a) >= 2 && a[0] == '-' && a[1] != '-':
			if o, ok = agentShort(a[1]); !ok {
				return nil, unknownOption(a[:2], "on the command line")
			}
			value, hasValue = a[2:], len(a) > 2
		default:
			return nil, fmt.Errorf("fence-agent: unexpected argument %q: options are --name=value (or name=value lines on stdin)", a)
		}
		switch {
		case o.boolean && !hasValue:
			value = "1"
		case !hasValue:
			if i+1 >= len(args) {
				return nil, fmt.Errorf("fence-agent: option %s needs a value", a)
			}
			i++
			value = args[i]
		}
		opts[o.name] = value
	}
	return opts, nil
}

func agentShort(c byte) (agentOption, bool) {
	for _, o := range agentOptions {
		if o.short != 0 && o.short == c {
			return o, true
		}
	}
	return agentOption{}, false
}

// agentConfig is the validated input of one invocation.
type agentConfig struct {
	action         string
	opts           map[string]string // canonical name -> value, defaults filled
	devices        []string
	timeout, delay time.Duration
	verbose        bool
}

// newAgentConfig fills defaults and checks what every action needs: a known action and
// well-formed values. What only some actions need (devices, keys) is checked by them.
func newAgentConfig(opts map[string]string) (*agentConfig, error) {
	for _, o := range agentOptions {
		if _, set := opts[o.name]; !set && o.def != "" {
			opts[o.name] = o.def
		}
	}
	c := &agentConfig{action: strings.ToLower(opts["action"]), opts: opts}
	if c.action == "meta-data" { // the OCF spelling
		c.action = "metadata"
	}
	if !slices.Contains(agentActions, c.action) {
		return nil, fmt.Errorf("fence-agent: action %q: allowed %s (reboot is not offered: fabric fencing cannot power a node on; Pacemaker does off instead)",
			opts["action"], strings.Join(agentActions, ", "))
	}
	var err error
	if c.timeout, err = agentSeconds(opts, "timeout"); err == nil && c.timeout <= 0 {
		err = fmt.Errorf("fence-agent: option timeout %q: must be > 0", opts["timeout"])
	}
	if err != nil {
		return nil, err
	}
	if c.delay, err = agentSeconds(opts, "delay"); err != nil {
		return nil, err
	}
	if c.verbose, err = agentBool(opts, "verbose"); err != nil {
		return nil, err
	}
	c.devices = strings.FieldsFunc(opts["devices"], func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	return c, nil
}

// agentActions are the actions offered, in metadata order.
var agentActions = []string{"on", "off", "status", "monitor", "metadata", "validate-all"}

// agentSeconds parses a duration option: seconds as fence-agents give them ("20",
// "1.5"), or a Go duration ("500ms").
func agentSeconds(opts map[string]string, name string) (time.Duration, error) {
	v := opts[name]
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s <= 86400 {
		return time.Duration(s * float64(time.Second)), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 && d <= 24*time.Hour {
		return d, nil
	}
	return 0, fmt.Errorf("fence-agent: option %s %q: want seconds (0-86400) or a duration like 500ms", name, v)
}

// agentBool parses a boolean option the way fence-agents do.
func agentBool(opts map[string]string, name string) (bool, error) {
	switch strings.ToLower(opts[name]) {
	case "", "0", "no", "off", "false":
		return false, nil
	case "1", "yes", "on", "true":
		return true, nil
	}
	return false, fmt.Errorf("fence-agent: option %s %q: want 1/yes/on/true or 0/no/off/false", name, opts[name])
}

// targetKey is the key of the node acted on: key, else the node id in plug (or, without
// plug, nodename) with cluster -- fence.NewKey, exactly as `understudy fence --node-id`
// and the agent build keys.
func (c *agentConfig) targetKey() (fence.Key, error) {
	if k := c.opts["key"]; k != "" {
		key, err := fence.ParseKey(k)
		if err != nil {
			return 0, fmt.Errorf("fence-agent: option key: %w", err)
		}
		return key, nil
	}
	plug, field := c.opts["plug"], "plug"
	if plug == "" {
		plug, field = c.opts["nodename"], "nodename"
	}
	if plug == "" {
		return 0, errors.New("fence-agent: option plug: missing: give plug (the node id) or key")
	}
	return c.idKey(field, plug)
}

// idKey builds the key of the node id in value (option field) of cluster.
func (c *agentConfig) idKey(field, value string) (fence.Key, error) {
	id, err := strconv.ParseUint(value, 10, 32)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("fence-agent: option %s %q: want a node id (decimal, 1-4294967295); map node names to ids with pcmk_host_map", field, value)
	}
	if c.opts["cluster"] == "" {
		return 0, fmt.Errorf("fence-agent: option cluster: missing: needed to build the key of %s %s (or give the key itself)", field, value)
	}
	return fence.NewKey(c.opts["cluster"], uint32(id))
}

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

// Metadata, in the shape fence-agents print (lib/metadata.rng): pcs reads the parameters
// from it, Pacemaker the actions. "on" is on_target and automatic, as for fence_scsi:
// Pacemaker unfences a node by running "on" on that node when it joins. No "reboot":
// Pacemaker then fences with "off".
type agentMeta struct {
	XMLName   xml.Name      `xml:"resource-agent"`
	Name      string        `xml:"name,attr"`
	ShortDesc string        `xml:"shortdesc,attr"`
	LongDesc  string        `xml:"longdesc"`
	VendorURL string        `xml:"vendor-url"`
	Params    []agentParam  `xml:"parameters>parameter"`
	Actions   []agentAction `xml:"actions>action"`
}

type agentParam struct {
	Name       string `xml:"name,attr"`
	Unique     string `xml:"unique,attr"`
	Required   string `xml:"required,attr"`
	Obsoletes  string `xml:"obsoletes,attr,omitempty"`
	Deprecated string `xml:"deprecated,attr,omitempty"`
	Getopt     struct {
		Mixed string `xml:"mixed,attr"`
	} `xml:"getopt"`
	Content struct {
		Type    string `xml:"type,attr"`
		Default string `xml:"default,attr,omitempty"`
	} `xml:"content"`
	ShortDesc struct {
		Lang string `xml:"lang,attr"`
		Text string `xml:",chardata"`
	} `xml:"shortdesc"`
}

type agentAction struct {
	Name      string `xml:"name,attr"`
	OnTarget  string `xml:"on_target,attr,omitempty"`
	Automatic string `xml:"automatic,attr,omitempty"`
}

const agentLongDesc = `fence_understudy fences with SCSI-3 persistent reservations, with the keys of understudy (first 4 bytes of SHA-256 of the cluster name + node id). Every node registers its key on every path of every device (on, run by Pacemaker on the node itself when it joins); a Write Exclusive - Registrants Only reservation lets only registered nodes write. off preempts the victim's key (PREEMPT AND ABORT, or PREEMPT where the target lacks it) with this node's key and verifies with READ KEYS on every path that it is gone. The target then rejects every write of the fenced node. A fenced node must be rebooted and unfenced to write again.`

func writeAgentMetadata(w io.Writer) error {
	m := agentMeta{Name: "fence_understudy", ShortDesc: "Fence agent for SCSI-3 persistent reservations with understudy's keys",
		LongDesc: agentLongDesc}
	for _, o := range agentOptions {
		if o.hidden {
			continue
		}
		m.Params = append(m.Params, agentParamOf(o, o.name))
		if o.alias == "port" { // fence_scsi lists the old name too, deprecated
			p := agentParamOf(o, o.alias)
			p.Deprecated = "1"
			m.Params = append(m.Params, p)
		}
	}
	for _, a := range agentActions {
		act := agentAction{Name: a}
		if a == "on" {
			act.OnTarget, act.Automatic = "1", "1"
		}
		m.Actions = append(m.Actions, act)
	}
	b, err := xml.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("fence-agent: metadata: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s%s\n", `<?xml version="1.0" ?>`+"\n", b)
	return err
}

func agentParamOf(o agentOption, name string) agentParam {
	p := agentParam{Name: name, Unique: "0", Required: "0"}
	if o.name == "action" {
		p.Required = "1"
	}
	if o.alias == "port" && name == o.name {
		p.Obsoletes = o.alias
	}
	p.Getopt.Mixed = "--" + strings.ReplaceAll(o.name, "_", "-")
	if !o.boolean {
		p.Getopt.Mixed += "=[" + o.name + "]"
	}
	if o.short != 0 {
		p.Getopt.Mixed = "-" + string(o.short) + ", " + p.Getopt.Mixed
	}
	switch {
	case o.boolean:
		p.Content.Type = "boolean"
	case o.name == "timeout" || o.name == "delay":
		p.Content.Type = "second"
	default:
		p.Content.Type = "string"
	}
	p.Content.Default = o.def
	p.ShortDesc.Lang, p.ShortDesc.Text = "en", o.help
	return p
}
