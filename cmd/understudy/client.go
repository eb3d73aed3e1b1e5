package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// operatorNode stands in for the node name when operator commands load the agent's
// configuration: takeover.LoadConfig requires a node, operators have none, and the name
// is never used for anything but passing that check.
const operatorNode = "understudy-cli"

// globalFlagNames are the root's persistent flags that are also agent configuration
// flags (takeover.BindFlags): they are passed on only when the user set them, so the
// config file and UNDERSTUDY_* environment keep their precedence below flags.
var globalFlagNames = []string{"config", "etcd-endpoints", "cluster", "prefix"}

// loadClientConfig reads the same configuration as the agent (file from --config or
// UNDERSTUDY_CONFIG, UNDERSTUDY_* environment, flags), so an operator on a node needs
// no flags at all, and TLS/credentials come from the same place.
func (a *app) loadClientConfig(flags *pflag.FlagSet) (takeover.Config, error) {
	fs := pflag.NewFlagSet("understudy", pflag.ContinueOnError)
	takeover.BindFlags(fs)
	for _, name := range globalFlagNames {
		f := flags.Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		value := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if err := fs.Lookup(name).Value.(pflag.SliceValue).Replace(sv.GetSlice()); err != nil {
				return takeover.Config{}, err
			}
			fs.Lookup(name).Changed = true
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return takeover.Config{}, &exitError{code: exitUsage, err: fmt.Errorf("--%s: %w", name, err)}
		}
	}
	if err := fs.Set("node", operatorNode); err != nil {
		return takeover.Config{}, err
	}
	cfg, err := takeover.LoadConfig(fs)
	if err != nil {
		return takeover.Config{}, &exitError{code: exitUsage, err: err}
	}
	return cfg, nil
}

// openStore connects to etcd for one operator command and checks that etcd answers, so
// that an unreachable etcd fails within the dial timeout instead of hanging. done closes
// the client.
func (a *app) openStore(ctx context.Context) (st *lease.Store, done func(), err error) {
	if a.flags == nil {
		return nil, nil, errors.New("internal: flags not set")
	}
	cfg, err := a.loadClientConfig(a.flags)
	if err != nil {
		return nil, nil, err
	}
	a.cluster = cfg.Cluster
	ccfg, err := cfg.EtcdClientConfig()
	if err != nil {
		return nil, nil, &exitError{code: exitUsage, err: err}
	}
	// The CLI's own output is the message; etcd client logs would only repeat it.
	ccfg.Logger = zap.NewNop()
	ccfg.Context = ctx
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd client for %v: %w", cfg.Etcd.Endpoints, err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.Etcd.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, cfg.Prefix+"spec", clientv3.WithCountOnly()); err != nil {
		_ = cli.Close()
		return nil, nil, fmt.Errorf("etcd at %v unreachable (within %s): %w", cfg.Etcd.Endpoints, cfg.Etcd.DialTimeout, err)
	}
	return lease.NewStore(cli, cfg.Prefix, nil), func() { _ = cli.Close() }, nil
}
