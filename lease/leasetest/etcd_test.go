package leasetest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartStopRestartKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := Start(t)
	cli := e.Client(t)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	endpoints := e.Endpoints()
	e.Stop()
	e.Stop() // idempotent
	e.Restart(t)
	if got := e.Endpoints(); got[0] != endpoints[0] {
		t.Fatalf("endpoints changed across restart: %v -> %v", endpoints, got)
	}
	WaitReady(ctx, t, cli)
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("data lost across restart: %v", resp.Kvs)
	}
}

func TestMinimumTTLIsOneSecond(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := Start(t).Client(t)
	resp, err := cli.Grant(ctx, 1)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if resp.TTL != 1 {
		t.Fatalf("granted TTL %ds, want 1s (TickMs/ElectionMs settings)", resp.TTL)
	}
}
