package lab

import (
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"go.uber.org/zap"
)

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

func (o *KeepalivedOptions) defaults() error {
	if o.Binary == "" || o.Net == nil {
		return fmt.Errorf("%w: keepalived: Binary and Net are required", ErrInvalidOption)
	}
	if o.Nodes[0] == o.Nodes[1] {
		return fmt.Errorf("%w: keepalived Nodes %q: want two different nodes", ErrInvalidOption, o.Nodes)
	}
	for i, n := range o.Nodes {
		if _, err := o.Net.Node(n); err != nil {
			return fmt.Errorf("%w: keepalived Nodes[%d]: %w", ErrInvalidOption, i, err)
		}
	}
	if o.VIP == "" {
		o.VIP = DefaultKeepalivedVIP
	}
	if err := o.checkVIP(); err != nil {
		return err
	}
	if o.Port == 0 {
		o.Port = DefaultKeepalivedPort
	}
	if o.Port < 1 || o.Port > 65535 {
		return fmt.Errorf("%w: keepalived Port %d: want 1 to 65535", ErrInvalidOption, o.Port)
	}
	if err := o.checkVRRP(); err != nil {
		return err
	}
	return o.checkRun()
}

// checkRun: the mode and the run's bounds.
func (o *KeepalivedOptions) checkRun() error {
	switch o.Mode {
	case "":
		o.Mode = KeepalivedKill
	case KeepalivedKill, KeepalivedLinkDown, KeepalivedStop:
	default:
		return fmt.Errorf("%w: keepalived Mode %q: want %s, %s or %s", ErrInvalidOption, o.Mode, KeepalivedKill, KeepalivedLinkDown, KeepalivedStop)
	}
	if o.Trials == 0 {
		o.Trials = 10
	}
	if o.Trials < 1 {
		return fmt.Errorf("%w: keepalived Trials %d: want 1 or more", ErrInvalidOption, o.Trials)
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = DefaultStepTimeout
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return nil
}

// checkVIP: an unused host address of the lab's client network.
func (o *KeepalivedOptions) checkVIP() error {
	ip := net.ParseIP(o.VIP).To4()
	used := []string{NetnsClientAddr}
	for _, n := range o.Nodes {
		h, _ := o.Net.Node(n)
		used = append(used, h.Addr)
	}
	if ip == nil || !ip.Mask(net.CIDRMask(24, 32)).Equal(net.IPv4(192, 0, 2, 0)) || ip[3] == 0 || ip[3] == 255 ||
		slices.Contains(used, ip.String()) {
		return fmt.Errorf("%w: keepalived VIP %q: want a free host address in 192.0.2.0/24 (not %v)", ErrInvalidOption, o.VIP, used)
	}
	return nil
}

// checkVRRP: VRRPv2 counts advert_int in whole seconds (1-255), VRRPv3 in centiseconds
// (12 bits); keepalived rounds anything else.
func (o *KeepalivedOptions) checkVRRP() error {
	if o.AdvertInt == 0 {
		o.AdvertInt = time.Second
	}
	if o.Version == 0 {
		o.Version = 3
		if o.AdvertInt%time.Second == 0 {
			o.Version = 2
		}
	}
	switch {
	case o.Version == 2 && (o.AdvertInt%time.Second != 0 || o.AdvertInt < time.Second || o.AdvertInt > 255*time.Second):
		return fmt.Errorf("%w: keepalived AdvertInt %s: VRRPv2 wants whole seconds from 1s to 255s", ErrInvalidOption, o.AdvertInt)
	case o.Version == 3 && (o.AdvertInt%(10*time.Millisecond) != 0 || o.AdvertInt < 10*time.Millisecond || o.AdvertInt > 4095*10*time.Millisecond):
		return fmt.Errorf("%w: keepalived AdvertInt %s: VRRPv3 wants multiples of 10ms from 10ms to 40.95s", ErrInvalidOption, o.AdvertInt)
	case o.Version != 2 && o.Version != 3:
		return fmt.Errorf("%w: keepalived Version %d: want 2 or 3", ErrInvalidOption, o.Version)
	}
	return nil
}
