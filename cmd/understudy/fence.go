package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/understudy-ha/understudy/fence"
	"github.com/understudy-ha/understudy/fence/iscsi"
	"github.com/understudy-ha/understudy/fence/scsi"
)

// fenceOpts are the flags every `understudy fence` subcommand shares.
type fenceOpts struct {
	devices   []string      // --device: paths of one LU (a dm device expands to its slaves)
	targets   []string      // --target: iscsi:// URLs, one per path
	key       string        // --key 0x...
	nodeID    uint32        // --node-id (with the global --cluster)
	initiator string        // --initiator-name for --target sessions
	timeout   time.Duration // --timeout for the whole operation
	yes       bool          // --yes for destructive subcommands
	register  bool          // --register: register own key first (preempt, clear)
}

const registerHelp = "register your key on every path first (needed with --target: the CLI's session is new)"

// registerFirst registers key when --register was given: a --target
// session is the CLI's own I_T nexus, unregistered, and PREEMPT and CLEAR
// are only accepted from a registered nexus.
func (o *fenceOpts) registerFirst(ctx context.Context, d *fence.Device, key fence.Key) error {
	if !o.register {
		return nil
	}
	return d.Register(ctx, key)
}

// newFenceCmd returns `understudy fence`: inspect and change the SCSI-3
// persistent reservations understudy uses for fencing, by hand. Logic lives
// in package fence; this file parses flags and prints.
func newFenceCmd() *cobra.Command {
	o := &fenceOpts{}
	cmd := &cobra.Command{
		Use:   "fence",
		Short: "Inspect and change SCSI-3 persistent reservations (fencing keys)",
		Long: `Inspect and change the SCSI-3 persistent reservations understudy fences with.

A LU is given by its paths: --device /dev/sdX (repeatable; a /dev/dm-N or /dev/mapper/NAME
expands to its paths) or --target iscsi://host[:port]/<iqn>/<lun> (repeatable, one
userspace iSCSI session each). A key is --key 0x... or --node-id N with the global
--cluster (key = first 4 bytes of SHA-256(cluster) + node id). Keys of --cluster are
printed with their node id.

With --target the CLI logs in as its own initiator (--initiator-name), so registrations it
makes belong to the CLI's short-lived session, not to any node's; SCSI registrations belong
to an I_T nexus. Use --target to inspect and to fence; register nodes from the nodes.

preempt, clear and unregister change who may write: they require --yes.`,
		Example: `  understudy fence keys --device /dev/sdb
  understudy fence reservation --target iscsi://192.0.2.9/iqn.2024-01.org.example:san/1
  understudy fence preempt --device /dev/sdb --cluster prod --node-id 4 --victim-node-id 1 --yes`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	pf := cmd.PersistentFlags()
	pf.StringArrayVar(&o.devices, "device", nil, "block device path of the LU (repeatable: one per path)")
	pf.StringArrayVar(&o.targets, "target", nil, "iSCSI URL iscsi://host[:port]/<iqn>/<lun> (repeatable: one per path)")
	pf.StringVar(&o.key, "key", "", "reservation key, hex (0x5a1e93c000000002)")
	pf.Uint32Var(&o.nodeID, "node-id", 0, "node id: key = hash(--cluster) + node id")
	pf.StringVar(&o.initiator, "initiator-name", "", "iSCSI initiator name for --target (default iqn.2025-01.io.understudy:fence-cli)")
	pf.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound for the whole operation")
	cmd.AddCommand(
		newFenceKeysCmd(o), newFenceReservationCmd(o), newFenceRegisterCmd(o), newFenceUnregisterCmd(o),
		newFenceReserveCmd(o), newFencePreemptCmd(o), newFenceClearCmd(o), newFenceWatchCmd(o),
	)
	return cmd
}

// cluster reads the global --cluster flag (defined on the root command).
func fenceCluster(cmd *cobra.Command) string {
	// The same sources as every other command, without needing etcd: --cluster,
	// UNDERSTUDY_CLUSTER, the config file's cluster, the default. A key built for the
	// wrong cluster would fence (or verify) a key nobody holds.
	if f := cmd.Flag("cluster"); f != nil && f.Changed {
		return f.Value.String()
	}
	if c := os.Getenv("UNDERSTUDY_CLUSTER"); c != "" {
		return c
	}
	path := os.Getenv("UNDERSTUDY_CONFIG")
	if f := cmd.Flag("config"); f != nil && f.Value.String() != "" {
		path = f.Value.String()
	}
	if path != "" {
		var file struct {
			Cluster string `yaml:"cluster"`
		}
		if b, err := os.ReadFile(path); err == nil && yaml.Unmarshal(b, &file) == nil && file.Cluster != "" {
			return file.Cluster
		}
	}
	if f := cmd.Flag("cluster"); f != nil {
		return f.Value.String() // the flag's default
	}
	return ""
}

// ownKey builds the key from --key or --node-id (+ --cluster).
func (o *fenceOpts) ownKey(cmd *cobra.Command) (fence.Key, error) {
	switch {
	case o.key != "" && o.nodeID != 0:
		return 0, usageErrorf("--key and --node-id contradict each other: give one")
	case o.key != "":
		k, err := fence.ParseKey(o.key)
		if err != nil {
			return 0, usageErrorf("invalid --key: %v", err)
		}
		return k, nil
	case o.nodeID != 0:
		k, err := fence.NewKey(fenceCluster(cmd), o.nodeID)
		if err != nil {
			return 0, usageErrorf("invalid --node-id/--cluster: %v", err)
		}
		return k, nil
	}
	return 0, usageErrorf("missing key: give --key 0x... or --node-id N (with --cluster)")
}

// open builds the Device from --device/--target. The returned close
// function releases every path, bounded by its own context because it must
// run even when the operation's ctx has expired.
func (o *fenceOpts) open(ctx context.Context) (*fence.Device, func(), error) {
	if len(o.devices) == 0 && len(o.targets) == 0 {
		return nil, nil, usageErrorf("missing LU: give --device /dev/... or --target iscsi://... (repeatable)")
	}
	var paths []fence.Transport
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	name := strings.Join(append(append([]string{}, o.devices...), o.targets...), ",")
	for _, d := range o.devices {
		ts, err := fence.OpenPaths(d)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		paths = append(paths, ts...)
		closers = append(closers, func() { _ = fence.CloseAll(ts) })
	}
	for i, u := range o.targets {
		t, c, err := openISCSIPath(ctx, u, o.initiator, i)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		paths = append(paths, t)
		closers = append(closers, c)
	}
	return &fence.Device{Name: name, Paths: paths}, closeAll, nil
}

// withDevice runs fn with the opened device under --timeout.
func (o *fenceOpts) withDevice(cmd *cobra.Command, fn func(ctx context.Context, d *fence.Device) error) error {
	if o.timeout <= 0 {
		return usageErrorf("invalid --timeout %v: must be > 0", o.timeout)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	d, closeFn, err := o.open(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	return fn(ctx, d)
}

// describeKey renders "0x5a1e93c000000002  node 2" for keys of --cluster.
func describeKey(k fence.Key, cluster string) string {
	if cluster != "" && k.InCluster(cluster) {
		return fmt.Sprintf("%v  node %d", k, k.NodeID())
	}
	return fmt.Sprintf("%v  (not cluster %q)", k, cluster)
}

func newFenceKeysCmd(o *fenceOpts) *cobra.Command {
	var full bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List registered keys (READ KEYS, or READ FULL STATUS with --full)",
		Example: `  understudy fence keys --device /dev/mapper/shared --cluster prod
  understudy fence keys --target iscsi://127.0.0.1:3260/iqn.2025-01.io.understudy:lab/1 --full`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withDevice(cmd, func(ctx context.Context, d *fence.Device) error {
				if full {
					err := printFullStatus(ctx, cmd.OutOrStdout(), d, fenceCluster(cmd))
					if !errors.Is(err, scsi.ErrIllegalRequest) {
						return err
					}
					fmt.Fprintln(cmd.ErrOrStderr(), "target does not support READ FULL STATUS; showing READ KEYS")
				}
				r, err := d.Keys(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "generation %d, %d registration(s)\n", r.Generation, len(r.Keys))
				for _, k := range r.Keys {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", describeKey(k, fenceCluster(cmd)))
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "show initiator, holder and port per registration (READ FULL STATUS)")
	return cmd
}

func printFullStatus(ctx context.Context, w io.Writer, d *fence.Device, cluster string) error {
	gen, regs, err := d.FullStatus(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "generation %d, %d registration(s)\n", gen, len(regs))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tNODE\tHOLDER\tPORT\tINITIATOR")
	for _, r := range regs {
		node := "-"
		if r.Key.InCluster(cluster) {
			node = fmt.Sprint(r.Key.NodeID())
		}
		holder := ""
		if r.Holder {
			holder = r.Type.String()
		}
		port := fmt.Sprint(r.RelTgtPort)
		if r.AllTgPt {
			port = "all"
		}
		fmt.Fprintf(tw, "%v\t%s\t%s\t%s\t%s\n", r.Key, node, holder, port, r.Initiator)
	}
	return tw.Flush()
}

func newFenceReservationCmd(o *fenceOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "reservation",
		Short:   "Show the persistent reservation (READ RESERVATION)",
		Example: `  understudy fence reservation --device /dev/sdb --cluster prod`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withDevice(cmd, func(ctx context.Context, d *fence.Device) error {
				r, err := d.Reservation(ctx)
				if err != nil {
					return err
				}
				if !r.Held {
					fmt.Fprintf(cmd.OutOrStdout(), "generation %d: no reservation (any initiator may write)\n", r.Generation)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "generation %d: %v held by %s\n", r.Generation, r.Type, describeKey(r.Key, fenceCluster(cmd)))
				return nil
			})
		},
	}
}

func newFenceRegisterCmd(o *fenceOpts) *cobra.Command {
	var noReserve bool
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register the key on every path and reserve if there is no reservation (unfence)",
		Long: `Register the key on every path (REGISTER AND IGNORE EXISTING KEY), then, unless
--no-reserve, create the Write Exclusive - Registrants Only reservation if none exists:
what a node does when it joins. This undoes a fence of that key: make sure the node it
belongs to may write again.`,
		Example: `  understudy fence register --device /dev/sdb --cluster prod --node-id 2`,
		Args:    cobra.NoArgs,
		RunE: o.keyed("", func(ctx context.Context, cmd *cobra.Command, d *fence.Device, key fence.Key) error {
			op := d.Unfence
			if noReserve {
				op = d.Register
			}
			err := op(ctx, key)
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "registered %s on %d path(s)\n", describeKey(key, fenceCluster(cmd)), len(d.Paths))
			}
			return err
		}),
	}
	cmd.Flags().BoolVar(&noReserve, "no-reserve", false, "only register, never create the reservation")
	return cmd
}

// requireYes refuses destructive subcommands without --yes.
func requireYes(o *fenceOpts, what string) error {
	if !o.yes {
		return usageErrorf("%s changes who may write to the LU: add --yes if you mean it", what)
	}
	return nil
}

// keyed is the RunE of subcommands that act with the caller's key: it
// builds the key, demands --yes when confirm names the action, opens the
// device and runs fn.
func (o *fenceOpts) keyed(confirm string, fn func(ctx context.Context, cmd *cobra.Command, d *fence.Device, key fence.Key) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		key, err := o.ownKey(cmd)
		if err != nil {
			return err
		}
		if confirm != "" {
			if err := requireYes(o, confirm); err != nil {
				return err
			}
		}
		return o.withDevice(cmd, func(ctx context.Context, d *fence.Device) error { return fn(ctx, cmd, d, key) })
	}
}

func newFenceUnregisterCmd(o *fenceOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "unregister",
		Short: "Remove the key from every path (needs --yes)",
		Long: `Remove the key from every path (REGISTER with service action key 0). If the key holds
the reservation, the reservation goes too, and until another registrant reserves, any
initiator may write.`,
		Example: `  understudy fence unregister --device /dev/sdb --key 0x5a1e93c000000002 --yes`,
		Args:    cobra.NoArgs,
		RunE: o.keyed("unregister", func(ctx context.Context, cmd *cobra.Command, d *fence.Device, key fence.Key) error {
			if err := d.Unregister(ctx, key); err != nil {
				return err
			}
			// Unregister counts RESERVATION CONFLICT as "not registered with that key",
			// which is also what a session that never registered gets: check the result.
			regs, err := d.Keys(ctx)
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if regs.Has(key) {
				return fmt.Errorf("%s is still registered: this command's I_T nexus is not the one that registered it "+
					"(iSCSI targets tie registrations to the session); to remove another nexus's key use preempt --register",
					describeKey(key, fenceCluster(cmd)))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unregistered %s\n", describeKey(key, fenceCluster(cmd)))
			return nil
		}),
	}
	cmd.Flags().BoolVar(&o.yes, "yes", false, "confirm")
	return cmd
}

func newFenceReserveCmd(o *fenceOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "reserve",
		Short:   "Create the Write Exclusive - Registrants Only reservation with the key",
		Example: `  understudy fence reserve --device /dev/sdb --cluster prod --node-id 2`,
		Args:    cobra.NoArgs,
		RunE: o.keyed("", func(ctx context.Context, cmd *cobra.Command, d *fence.Device, key fence.Key) error {
			if err := d.Reserve(ctx, key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reserved (%v) by %s\n", fence.ReservationType, describeKey(key, fenceCluster(cmd)))
			return nil
		}),
	}
}

func newFencePreemptCmd(o *fenceOpts) *cobra.Command {
	var victim string
	var victimID uint32
	cmd := &cobra.Command{
		Use:   "preempt",
		Short: "Fence a key: PREEMPT AND ABORT it, then verify on every path (needs --yes)",
		Long: `Fence the victim key with PREEMPT AND ABORT using your own key, then verify with READ KEYS
on every path that it is gone and that a reservation exists. The exit code is 0 only when
the fence is verified. Your key must be registered on the paths used: with --target (a new
session) add --register.`,
		Example: `  understudy fence preempt --device /dev/sdb --cluster prod --node-id 4 --victim-node-id 1 --yes
  understudy fence preempt --target iscsi://10.0.0.5/iqn.2025-01.com.example:san/1 \
      --cluster prod --node-id 4 --register --victim 0x6754af9600000001 --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := victimKey(cmd, victim, victimID)
			if err != nil {
				return err
			}
			return o.keyed("preempt", func(ctx context.Context, cmd *cobra.Command, d *fence.Device, self fence.Key) error {
				if self == v { // refuse before --register changes anything
					return usageErrorf("the victim %s is this command's own key: a node cannot fence itself", v)
				}
				if err := o.registerFirst(ctx, d, self); err != nil {
					return err
				}
				if err := d.Fence(ctx, self, v); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "fenced %s (verified on %d path(s))\n", describeKey(v, fenceCluster(cmd)), len(d.Paths))
				return nil
			})(cmd, args)
		},
	}
	cmd.Flags().StringVar(&victim, "victim", "", "key to fence, hex")
	cmd.Flags().Uint32Var(&victimID, "victim-node-id", 0, "node id to fence (key from --cluster)")
	cmd.Flags().BoolVar(&o.register, "register", false, registerHelp)
	cmd.Flags().BoolVar(&o.yes, "yes", false, "confirm")
	return cmd
}

// victimKey builds the key to fence from --victim or --victim-node-id.
func victimKey(cmd *cobra.Command, victim string, victimID uint32) (fence.Key, error) {
	switch {
	case victim != "" && victimID != 0:
		return 0, usageErrorf("--victim and --victim-node-id contradict each other: give one")
	case victim != "":
		v, err := fence.ParseKey(victim)
		if err != nil {
			return 0, usageErrorf("invalid --victim: %v", err)
		}
		return v, nil
	case victimID != 0:
		v, err := fence.NewKey(fenceCluster(cmd), victimID)
		if err != nil {
			return 0, usageErrorf("invalid --victim-node-id: %v", err)
		}
		return v, nil
	}
	return 0, usageErrorf("missing victim: give --victim 0x... or --victim-node-id N")
}

func newFenceClearCmd(o *fenceOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "clear",
		Short: "Remove every registration and the reservation (needs --yes)",
		Long: `CLEAR removes every key and the reservation: every fenced node may write again, and so
may any initiator, until nodes register and reserve again. Only for repair, after making
sure no fenced node is still running. Your key must be registered.`,
		Example: `  understudy fence clear --device /dev/sdb --key 0x5a1e93c000000002 --yes`,
		Args:    cobra.NoArgs,
		RunE: o.keyed("clear", func(ctx context.Context, cmd *cobra.Command, d *fence.Device, key fence.Key) error {
			if err := o.registerFirst(ctx, d, key); err != nil {
				return err
			}
			if err := d.Clear(ctx, key); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "cleared every registration and the reservation")
			return nil
		}),
	}
	cmd.Flags().BoolVar(&o.yes, "yes", false, "confirm")
	cmd.Flags().BoolVar(&o.register, "register", false, registerHelp)
	return cmd
}

func newFenceWatchCmd(o *fenceOpts) *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Read the key every interval until it is gone (what the agent's watchdog does)",
		Long: `Read the registered keys every --interval and exit 1 as soon as the key is gone (the
node was fenced) or the keys cannot be read; runs until interrupted otherwise (exit 0).
With --device it also probes each path with a zero-length WRITE(16), which answers
RESERVATION CONFLICT when that path's I_T nexus is no longer registered. --timeout does
not apply.`,
		Example: `  understudy fence watch --device /dev/sdb --cluster prod --node-id 2 --interval 500ms`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := o.ownKey(cmd)
			if err != nil {
				return err
			}
			if interval <= 0 {
				return usageErrorf("invalid --interval %v: must be > 0", interval)
			}
			ctx := cmd.Context()
			d, closeFn, err := o.open(ctx)
			if err != nil {
				return err
			}
			defer closeFn()
			fmt.Fprintf(cmd.OutOrStdout(), "watching %s every %v\n", describeKey(key, fenceCluster(cmd)), interval)
			start := time.Now()
			// The zero-length write probe asks "is THIS nexus registered?":
			// meaningful through the node's own paths (--device), not
			// through the CLI's own --target sessions.
			wd := &fence.Watchdog{Device: d, Key: key, Interval: interval, NoWriteProbe: len(o.targets) > 0}
			err = <-wd.Run(ctx)
			if err == nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("after %v: %w", time.Since(start).Round(time.Millisecond), err)
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", fence.DefaultWatchInterval, "how often to read the key")
	return cmd
}

// defaultCLIInitiator is the CLI's own iSCSI name. It must differ from the
// agents' names: a login with an agent's name and ISID would reinstate (end)
// that agent's session.
const defaultCLIInitiator = "iqn.2025-01.io.understudy:fence-cli"

// openISCSIPath dials one userspace iSCSI session for --target number i.
// The ISID is derived from the process id and i, so concurrent CLI runs and
// several paths to one target do not reinstate each other's sessions.
func openISCSIPath(ctx context.Context, rawURL, initiator string, i int) (fence.Transport, func(), error) {
	t, err := iscsi.ParseURL(rawURL)
	if err != nil {
		return nil, nil, usageErrorf("invalid --target: %v", err)
	}
	if initiator == "" {
		initiator = defaultCLIInitiator
	}
	cfg := iscsi.Config{InitiatorName: initiator, ISID: iscsi.ISIDFromNodeIDIndex(uint32(os.Getpid()), uint8(i))}
	s, err := iscsi.Dial(ctx, t, cfg)
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() {
		// Own bound: the operation's ctx may already be done, and a
		// logout must not hang the CLI.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(cctx)
	}
	return s, closeFn, nil
}
