package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease/leasetest"
	"github.com/understudy-ha/understudy/takeover"
)

// TestAgentRunsAndStops: `understudy agent` with its health endpoint joins the cluster
// and, when its context ends (SIGTERM in main), stops both and exits 0.
func TestAgentRunsAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := newCluster(t, leasetest.Start(t), "agent")
	agentCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(agentCtx, []string{"agent", "--node", "node-a", "--cluster", "agent",
			"--etcd-endpoints", strings.Join(c.etcd.Endpoints(), ","), "--ttl", "2s",
			"--health-listen", "127.0.0.1:0", "--state-dir", t.TempDir(), "--log-level", "error"},
			&bytes.Buffer{}, &stderr)
	}()
	waitFor(t, "node-a to join", func() bool {
		n, ok := findNode(c.status(), "node-a")
		return ok && n.State != takeover.StateDown
	})
	stop()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("agent exit %d: %s", code, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("agent did not stop")
	}
}

func TestAgentBadConfig(t *testing.T) {
	_, stderr, code := runCLI(t, "agent", "--etcd-endpoints", "http://127.0.0.1:1", "--ttl", "1500ms")
	if code != exitUsage || !strings.Contains(stderr, "node:") || !strings.Contains(stderr, "ttl: 1.5s must be a whole number of seconds") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}
