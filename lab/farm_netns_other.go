//go:build !linux

package lab

import (
	"context"
	"fmt"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LabRoot holds the directories of namespace farms (Linux only).
const LabRoot = "/run/usl"

type netnsFarm struct {
	net       *Netns
	san       *san
	etcdCreds etcdConfig
	cliConfig string
}

func (f *Farm) enableAuth(context.Context) error { return nil }

func (f *Farm) healthTLS(string, string, *agentConfig) error { return nil }

type san struct{}

func (*san) addLUN(context.Context) (int, error) {
	return 0, fmt.Errorf("%w: the lab SAN", ErrUnsupported)
}
func (*san) url(string, int) string { return "" }
func (*san) file(int) string        { return "" }

func (f *Farm) startNetns(context.Context, *clientv3.Config) error {
	return fmt.Errorf("%w: the namespace lab", ErrUnsupported)
}

func (f *Farm) waitEtcd(context.Context) error { return nil }
func (f *Farm) closeNetns() error              { return nil }

// Net is the farm's network in Netns mode (nil otherwise).
func (f *Farm) Net() *Netns { return f.net }

// The lab's etcd members run in Linux namespaces only; a farm here has none.

// EtcdMemberNames is empty: no namespace lab exists here.
func (f *Farm) EtcdMemberNames() []string { return nil }

// EtcdLeader needs the namespace lab.
func (f *Farm) EtcdLeader(context.Context) (string, error) { return "", errNoNetns }

// EtcdHealthy needs the namespace lab.
func (f *Farm) EtcdHealthy(context.Context) error { return errNoNetns }

// EtcdKill needs the namespace lab.
func (f *Farm) EtcdKill(string) (time.Time, error) { return time.Time{}, errNoNetns }

// EtcdSignal needs the namespace lab.
func (f *Farm) EtcdSignal(string, syscall.Signal) (time.Time, error) { return time.Time{}, errNoNetns }

// EtcdRestart needs the namespace lab.
func (f *Farm) EtcdRestart(string) error { return errNoNetns }
