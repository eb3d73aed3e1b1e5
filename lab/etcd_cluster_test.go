//go:build linux

package lab_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
)

// TestEtcdClusterQuorumBack: a lab with three etcd members loses its quorum (two members
// stopped) and gets it back; the lab's own client reads the cluster again within a few
// seconds, and killing the leader yields a new one.
var quorumLost = 30 * time.Second

func TestEtcdClusterQuorumBack(t *testing.T) {
	requireNetLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := lab.NewFarm(ctx, lab.Options{Binary: binary, Netns: true, TTL: 2 * time.Second, EtcdMembers: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Errorf("close farm: %v", err)
		}
	}()
	if _, err := f.Status(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"etcd", "etcd2"} {
		if _, err := f.EtcdSignal(m, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(quorumLost)
	for _, m := range []string{"etcd", "etcd2"} {
		if _, err := f.EtcdSignal(m, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	back := time.Now()
	for {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := f.Status(sctx)
		scancel()
		if err == nil {
			break
		}
		t.Logf("+%s: %v", time.Since(back).Round(time.Millisecond), err)
		if time.Since(back) > 20*time.Second {
			t.Fatalf("the lab's client still cannot read the cluster %s after the quorum came back", time.Since(back))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("cluster readable %s after the quorum came back", time.Since(back).Round(time.Millisecond))
	leader, err := f.EtcdLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.EtcdKill(leader); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := f.EtcdLeader(ctx)
		if err == nil && l != leader {
			t.Logf("killed leader %s; new leader %s", leader, l)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after killing %s: %v", leader, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := f.EtcdRestart(leader); err != nil {
		t.Fatal(err)
	}
}
