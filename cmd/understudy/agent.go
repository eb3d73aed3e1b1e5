package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/health"
	"github.com/understudy-ha/understudy/takeover"
)

func (a *app) newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent (the daemon)",
		Long: `agent runs this node's member of the cluster: it keeps an etcd lease, registers the
node, qualifies it, claims orphaned roles (fence, storage, exec, VIP, health check), gives
roles back when told to, and demotes itself when it can no longer prove its lease alive.
Beside it runs the health endpoint (/healthz, /readyz, /roles/<role>, /status, /metrics),
read-only, over TLS when health_tls_cert_file and health_tls_key_file are set.

Configuration, later sources winning: defaults, the YAML file (--config or
UNDERSTUDY_CONFIG), UNDERSTUDY_* environment (UNDERSTUDY_ETCD_ENDPOINTS,
UNDERSTUDY_ETCD_PASSWORD, ...), flags. SIGTERM/SIGINT stop every role cleanly.
Exit codes: 0 stopped or removed from the cluster, 1 failure, 2 invalid configuration.`,
		Example: `  understudy agent --config /etc/understudy/agent.yaml
  understudy agent --node node-a --etcd-endpoints http://127.0.0.1:2379 --log-format console`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := takeover.LoadConfig(cmd.Flags())
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			log, err := takeover.NewLogger(cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			defer func() { _ = log.Sync() }()
			return runAgent(cmd.Context(), cfg, log)
		},
	}
	// The agent's own flags shadow the root's --config/--etcd-endpoints/--cluster/--prefix
	// of the same names and meaning (cobra prefers a command's local flag).
	takeover.BindFlags(cmd.Flags())
	return cmd
}

// runAgent runs the agent and its health endpoint until ctx ends or either fails; each
// stops the other, and both have returned when runAgent returns.
func runAgent(ctx context.Context, cfg takeover.Config, log *zap.Logger) error {
	// Load the health endpoint's certificates before anything starts: a bad file is a
	// configuration error (exit 2), not a runtime failure.
	var healthTLS *tls.Config
	if cfg.HealthServesTLS() {
		var err error
		healthTLS, err = health.TLSConfig(health.TLSFiles{CertFile: cfg.HealthTLSCertFile,
			KeyFile: cfg.HealthTLSKeyFile, ClientCAFile: cfg.HealthTLSClientCAFile})
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}
	ag, err := takeover.NewAgent(cfg, log)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	log.Info("starting agent", zap.String("version", version), zap.Any("config", cfg.Redacted()))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	var healthErr error
	if cfg.HealthListen != "" {
		srv := health.New(ag, ag.Gatherer(), log.Named("health"))
		srv.WithTLS(healthTLS)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A health endpoint that cannot listen is a misconfiguration the operator must
			// see at once (load balancers would mark the node down): stop the agent too.
			if healthErr = srv.Serve(ctx, cfg.HealthListen); healthErr != nil {
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Type=notify under systemd: READY once joined, STATUS, WATCHDOG from the loop.
		if err := health.NewNotifier(ag, log.Named("systemd")).Run(ctx); err != nil {
			log.Warn("systemd notify", zap.Error(err))
		}
	}()
	err = ag.Run(ctx)
	cancel()
	wg.Wait()
	switch {
	case errors.Is(err, takeover.ErrRemoved):
		log.Info("node removed from the cluster; agent exiting")
		return nil
	case err != nil:
		return fmt.Errorf("agent: %w", errors.Join(err, healthErr))
	case healthErr != nil:
		return fmt.Errorf("agent: %w", healthErr)
	}
	log.Info("agent stopped")
	return nil
}
