//go:build !linux

package lab

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
)

// The keepalived benchmark needs Linux network namespaces; its types are here so that
// callers build everywhere. Keep them identical to keepalived_linux.go's.

// KeepalivedCaveat goes with every keepalived figure.
const KeepalivedCaveat = "keepalived only moves an address: it does not fence the old holder, " +
	"mount storage or start the service (the service runs on both nodes all the time), " +
	"so its gap is what moving a VIP alone costs, not a takeover"

// Modes of BenchKeepalived: what happens to the master in each trial, and how it returns.
const (
	// KeepalivedKill: the master server dies: its links go down (it stops answering
	// ARP at once), keepalived and the service are SIGKILLed. It returns rebooted (the
	// VIP it left flushed, links up) with keepalived and the service started again.
	KeepalivedKill = "kill"
	// KeepalivedLinkDown: the master's links go down, its processes keep running; they
	// come back up.
	KeepalivedLinkDown = "linkdown"
	// KeepalivedStop: keepalived gets SIGTERM (graceful: it drops the VIP and sends
	// priority 0); it is started again.
	KeepalivedStop = "stop"
)

// Defaults of KeepalivedOptions.
const (
	DefaultKeepalivedVIP  = "192.0.2.60"
	DefaultKeepalivedPort = 8081
)

// KeepalivedOptions configure BenchKeepalived.
type KeepalivedOptions struct {
	Binary    string        // understudy executable, for demo-service. Required.
	Net       *Netns        // the lab network; both nodes must exist in it. Required.
	Nodes     [2]string     // the first is the initial master (priority 150 vs 100)
	VIP       string        // in 192.0.2.0/24; default DefaultKeepalivedVIP
	Port      int           // demo-service port; default DefaultKeepalivedPort
	AdvertInt time.Duration // default 1 s; below 1 s (multiples of 10 ms) needs Version 3
	Version   int           // VRRP version 2 or 3; default 2 for whole seconds, else 3
	Mode      string        // KeepalivedKill (default), KeepalivedLinkDown or KeepalivedStop
	Trials    int           // default 10
	// Dir keeps configs, pid files and logs (created if missing, kept); "" = a
	// temporary directory removed at the end.
	Dir         string
	StepTimeout time.Duration // bounds each wait; default DefaultStepTimeout
	Progress    io.Writer     // one line per trial; nil = quiet
	Log         *zap.Logger   // keepalived's log tails when a run fails; nil discards
}

// KeepalivedTrial is one measured VIP move.
type KeepalivedTrial struct {
	Trial int    `json:"trial"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Gap: the longest time the client (a request every 10 ms, 100 ms timeout) got no
	// answer, the same figure as understudy's own failover.
	Gap time.Duration `json:"gap_ns"`
	// ActToServed: from the action on the master until the first answer from To.
	ActToServed time.Duration `json:"act_to_served_ns"`
	Failed      int           `json:"failed_requests"` // during the trial
}

// KeepalivedReport is the result of BenchKeepalived.
type KeepalivedReport struct {
	AdvertInt time.Duration     `json:"advert_int_ns"`
	Version   int               `json:"vrrp_version"`
	Mode      string            `json:"mode"`
	Trials    []KeepalivedTrial `json:"trials"`
	Gap       Stats             `json:"gap"`
	EndedOn   string            `json:"ended_on"` // the master after the last trial
	Caveat    string            `json:"caveat"`
}

// BenchKeepalived needs Linux network namespaces.
func BenchKeepalived(context.Context, KeepalivedOptions) (*KeepalivedReport, error) {
	return nil, fmt.Errorf("%w: keepalived benchmark (network namespaces)", ErrUnsupported)
}
