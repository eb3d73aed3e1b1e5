package main

import (
	"fmt"
	"net/url"

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
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	cmd.AddCommand(newLabEtcdCmd())
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
	return cmd
}
