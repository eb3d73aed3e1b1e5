package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lab"
)

// newLabCmd groups the lab's commands: up, down and status for users, and the hidden
// helpers the lab runs inside its namespaces.
func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a five-node farm with a SAN in network namespaces on this machine",
		Long: `lab keeps the demo's farm running between commands (root needed): network
namespaces for a switch, etcd, a SAN (tgtd with one LUN per role), a client and nodes a-e,
each node running a real 'understudy agent'; role-a, role-b and role-c on a, b and c with
iSCSI storage, SCSI-3 fencing, a floating IP and demo-service; d and e standing by.

Only 192.0.2.0/24 and 198.51.100.0/24 are used, inside the lab's own namespaces; nothing
in this machine's own network changes. State lives in /run/usl/<name>.`,
		Example: `  sudo understudy lab up
  sudo understudy lab status
  sudo understudy lab down`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newLabUpCmd(), newLabDownCmd(), newLabStatusCmd(), newLabServeCmd(), newLabEtcdCmd())
	return cmd
}

func newLabUpCmd() *cobra.Command {
	var name string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab and leave it running",
		Example: `  sudo understudy lab up
  sudo understudy lab up --name ttl2 --ttl 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < time.Second || ttl%time.Second != 0 {
				return usageErrorf("invalid --ttl %s: want whole seconds, at least 1s", ttl)
			}
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("lab up: find the understudy executable: %w", err)
			}
			if err := lab.Up(cmd.Context(), bin, name, ttl); err != nil {
				return err
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "lab %s is up; 'understudy lab status %s' shows it, 'understudy lab down %s' removes it\n", name, name, name)
			return showLab(cmd.Context(), cmd, name)
		},
	}
	cmd.Flags().StringVar(&name, "name", "lab", "lab name (1-16 of a-z, 0-9, -)")
	cmd.Flags().DurationVar(&ttl, "ttl", lab.DefaultTTL, "lease TTL of the lab's agents (whole seconds)")
	return cmd
}

func newLabDownCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "down [NAME]",
		Short: "Remove a lab: processes, mounts, loop devices, namespaces, files (also after a crash)",
		Example: `  sudo understudy lab down
  sudo understudy lab down --all   # every lab, and leftovers of crashed demos and tests`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var dirs []string
			switch {
			case all && len(args) > 0:
				return usageErrorf("give a lab NAME or --all, not both")
			case all:
				dirs = lab.Labs()
			default:
				name := "lab"
				if len(args) == 1 {
					name = args[0]
				}
				dir, err := lab.LabDir(name)
				if err != nil {
					return usageErrorf("%v", err)
				}
				dirs = []string{dir}
			}
			var errs []error
			for _, dir := range dirs {
				_, _ = fmt.Fprintf(cmd.OutOrStdout(), "lab %s:\n", filepath.Base(dir))
				errs = append(errs, lab.Down(cmd.Context(), dir, cmd.OutOrStdout()))
			}
			if all {
				errs = append(errs, lab.SweepOrphans(cmd.Context(), cmd.OutOrStdout()))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every lab, and namespaces of lab runs whose process is gone")
	return cmd
}

func newLabStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show the labs on this machine, or one lab's cluster status and what answers on each VIP",
		Example: `  sudo understudy lab status
  sudo understudy lab status lab`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				return showLab(cmd.Context(), cmd, args[0])
			}
			dirs := lab.Labs()
			if len(dirs) == 0 {
				_, _ = fmt.Fprintln(cmd.OutOrStdout(), "no lab on this machine")
				return nil
			}
			for _, dir := range dirs {
				if err := showLabDir(cmd.Context(), cmd, dir); err != nil {
					return err
				}
			}
			return nil
		},
	}
	return cmd
}

func showLab(ctx context.Context, cmd *cobra.Command, name string) error {
	dir, err := lab.LabDir(name)
	if err != nil {
		return usageErrorf("%v", err)
	}
	return showLabDir(ctx, cmd, dir)
}

func showLabDir(ctx context.Context, cmd *cobra.Command, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	f, st, err := lab.Attach(ctx, dir)
	if err != nil {
		return err
	}
	defer f.Close()
	w := cmd.OutOrStdout()
	_, _ = fmt.Fprintf(w, "\nlab %s (owner pid %d, since %s, files in %s)\n", filepath.Base(dir), st.PID,
		st.Started.Format(time.DateTime), dir)
	_, _ = fmt.Fprintf(w, "namespaces %s-{sw,etcd,san,client,<node>}; operator shell: ip netns exec %s bash\n", st.Prefix, st.EtcdNS)
	_, _ = fmt.Fprintf(w, "CLI: ip netns exec %s understudy status --etcd-endpoints %s --cluster %s\n\n", st.EtcdNS, st.Endpoint, st.Cluster)
	cs, err := f.Status(ctx)
	if err != nil {
		return err
	}
	lab.WriteStatus(w, cs, f.ServedBy(ctx), lab.IsTerminal(w))
	return nil
}

// newLabServeCmd owns a lab until SIGTERM: 'lab up' starts it in a session of its own.
func newLabServeCmd() *cobra.Command {
	var name string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "Build a lab and keep it until SIGTERM (started by 'lab up')",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			// SIGHUP too: the session has no terminal, but a stray hangup must still
			// tear the lab down cleanly rather than kill it.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
			defer stop()
			log, err := zap.NewProduction()
			if err != nil {
				return err
			}
			return lab.Serve(ctx, lab.ServeOptions{Binary: bin, Name: name, TTL: ttl, Log: log})
		},
	}
	cmd.Flags().StringVar(&name, "name", "lab", "lab name")
	cmd.Flags().DurationVar(&ttl, "ttl", lab.DefaultTTL, "lease TTL")
	return cmd
}

// newLabEtcdCmd runs one embedded etcd member until SIGTERM: the lab starts it inside
// an etcd namespace, where this process's own address is the member's.
func newLabEtcdCmd() *cobra.Command {
	var m lab.Member
	var client, peer string
	cmd := &cobra.Command{
		Use:    "etcd",
		Short:  "Run one embedded etcd member with the lab's timing (used by the lab)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cu, err := url.Parse(client)
			if err != nil || cu.Host == "" {
				return usageErrorf("--client-url %q: want a URL like http://198.51.100.1:2379", client)
			}
			pu, err := url.Parse(peer)
			if err != nil || pu.Host == "" {
				return usageErrorf("--peer-url %q: want a URL like http://198.51.100.1:2380", peer)
			}
			if m.Dir == "" {
				return usageErrorf("--dir is required: the member's data directory")
			}
			if m.CertFile != "" && (m.KeyFile == "" || m.TrustedCAFile == "") {
				return usageErrorf("--cert-file needs --key-file and --trusted-ca-file (clients must present a certificate)")
			}
			m.Client, m.Peer = *cu, *pu
			log, err := zap.NewProduction()
			if err != nil {
				return err
			}
			e, err := lab.StartMember(cmd.Context(), m, log)
			if err != nil {
				return err
			}
			_, _ = fmt.Fprintf(cmd.ErrOrStderr(), "etcd member %s serving %s\n", m.Name, client)
			select {
			case <-cmd.Context().Done():
			case <-e.Done():
			}
			e.Close()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&m.Name, "name", "lab", "member name")
	f.StringVar(&m.Dir, "dir", "", "data directory")
	f.StringVar(&client, "client-url", "", "client URL to listen on and advertise")
	f.StringVar(&peer, "peer-url", "", "peer URL to listen on and advertise")
	f.StringVar(&m.InitialCluster, "initial-cluster", "", "name=peer-url,... of a static cluster (default: this member alone)")
	f.StringVar(&m.CertFile, "cert-file", "", "server certificate: clients must use TLS (with --key-file and --trusted-ca-file)")
	f.StringVar(&m.KeyFile, "key-file", "", "server key")
	f.StringVar(&m.TrustedCAFile, "trusted-ca-file", "", "CA whose client certificates are accepted (required with --cert-file)")
	return cmd
}
