package health

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/takeover"
)

// Notifier speaks systemd's notify protocol for the agent (a Type=notify unit): READY=1
// once the node has joined the cluster, a STATUS= line whenever its state or roles
// change, and WATCHDOG=1 every half watchdog interval — but only while the agent's
// decision loop is alive, so a hung agent is restarted by systemd rather than kept
// alive by a healthy side goroutine.
//
// Without NOTIFY_SOCKET (not started by systemd) Run returns at once.
type Notifier struct {
	src   Source
	log   *zap.Logger
	every time.Duration // how often to look; default 1 s
}

// NewNotifier returns a notifier reading src; log nil discards.
func NewNotifier(src Source, log *zap.Logger) *Notifier {
	if log == nil {
		log = zap.NewNop()
	}
	return &Notifier{src: src, log: log, every: time.Second}
}

// Run notifies until ctx ends, then sends STOPPING=1.
func (n *Notifier) Run(ctx context.Context) error {
	if ok, err := daemon.SdNotify(false, "STATUS=starting"); err != nil || !ok {
		return err // no systemd to talk to (ok=false), or the socket is broken
	}
	watchdog, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("health: systemd watchdog: %w", err)
	}
	every := n.every
	if watchdog > 0 && watchdog/2 < every {
		every = watchdog / 2
	}
	t := time.NewTicker(every)
	defer t.Stop()
	ready, status := false, ""
	for {
		l := n.src.Local()
		var msgs []string
		if !ready && l.State != takeover.StateDown && l.State != "" {
			ready = true
			msgs = append(msgs, "READY=1")
		}
		if s := statusLine(l); s != status {
			status = s
			msgs = append(msgs, "STATUS="+s)
		}
		// The loop runs at least every second when healthy; stale means hung.
		if watchdog > 0 && l.LoopAge < watchdog/2 {
			msgs = append(msgs, "WATCHDOG=1")
		}
		if len(msgs) > 0 {
			if _, err := daemon.SdNotify(false, strings.Join(msgs, "\n")); err != nil {
				n.log.Warn("systemd notify", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			_, _ = daemon.SdNotify(false, "STOPPING=1")
			return nil
		case <-t.C:
		}
	}
}

// statusLine is what `systemctl status` shows: state, roles with tokens, etcd.
func statusLine(l takeover.LocalStatus) string {
	roles := make([]string, 0, len(l.Roles))
	for r, tok := range l.Roles {
		roles = append(roles, fmt.Sprintf("%s@%d", r, tok))
	}
	sort.Strings(roles)
	s := l.State
	if len(roles) > 0 {
		s += " " + strings.Join(roles, ",")
	}
	if !l.EtcdOK {
		s += " (etcd unreachable)"
	}
	return s
}
