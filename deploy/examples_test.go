// Package deploy holds installation files: example configurations, and later systemd
// units and load balancer examples. Its test keeps the examples valid.
package deploy

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

func TestExampleClusterSpecIsValid(t *testing.T) {
	text, err := os.ReadFile("cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := lease.ParseSpec(text)
	if err != nil {
		t.Fatalf("deploy/cluster.yaml: %v", err)
	}
	if len(spec.Roles) == 0 {
		t.Fatal("deploy/cluster.yaml declares no roles")
	}
}

func TestExampleAgentConfigIsValid(t *testing.T) {
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	takeover.BindFlags(fs)
	if err := fs.Parse([]string{"--config", "agent.yaml"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := takeover.LoadConfig(fs)
	if err != nil {
		t.Fatalf("deploy/agent.yaml: %v", err)
	}
	if cfg.Node != "node-a" || cfg.Cluster != "prod" {
		t.Fatalf("unexpected config %+v", cfg.Redacted())
	}
}

// The unit must stay a notify service with a watchdog, running the agent with the
// example config's path: the agent's sd_notify support depends on both.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("systemd/understudy.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecStart=/usr/local/bin/understudy agent --config /etc/understudy/agent.yaml", "Restart=on-failure"} {
		if !strings.Contains(unit, want) {
			t.Errorf("deploy/systemd/understudy.service lacks %q", want)
		}
	}
}
