package takeover

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// handleCommands carries out the operator's intents addressed to this node, oldest first.
// A command is acknowledged (deleted) after it was acted on; ids already handled in this
// session are skipped in case the acknowledgement failed.
func (l *loop) handleCommands(ctx context.Context, v *lease.View) error {
	a := l.a
	for _, cmd := range v.Commands[a.cfg.Node] {
		if l.done[cmd.ID] {
			continue
		}
		log := a.log.With(zap.String("command", cmd.Kind), zap.String("id", cmd.ID))
		log.Info("operator command")
		var err error
		switch cmd.Kind {
		case CommandDrain:
			l.drain(ctx, v)
		case CommandMove:
			err = l.move(ctx, cmd)
		case CommandQualify:
			l.qualify(ctx, v)
		case CommandRemove:
			err = l.remove(ctx, cmd)
		default:
			log.Warn("unknown command kind; ignoring")
		}
		if errors.Is(err, ErrRemoved) {
			return err
		}
		if err != nil {
			log.Warn("command failed", zap.Error(err))
			a.appendEvent(ctx, l.st, lease.Event{Node: a.cfg.Node, Kind: cmd.Kind + "-failed", Role: cmd.Role, Detail: err.Error()})
		}
		l.done[cmd.ID] = true
		dctx, cancel := a.etcdCtx(ctx)
		if err := l.st.DoneCommand(dctx, a.cfg.Node, cmd.ID); err != nil {
			log.Warn("acknowledge command", zap.Error(err))
		}
		cancel()
	}
	return nil
}

// drain gives every role back gracefully, recorded clean so the next holders need not
// fence. The operator's cordon (set by `node drain`) keeps the node from taking new ones.
func (l *loop) drain(ctx context.Context, v *lease.View) {
	a := l.a
	a.draining = true
	l.publish(ctx, v)
	for _, role := range a.heldNames() {
		a.stopRole(ctx, l.st, role, EventRelease, "drain", "", true)
	}
	a.draining = false
}

// move hands a held role to the named node: stop it here, release it cleanly with the
// target recorded so other standbys leave it to that node.
func (l *loop) move(ctx context.Context, cmd lease.Command) error {
	if _, ok := l.a.held[cmd.Role]; !ok {
		return fmt.Errorf("takeover: move %q: not held by %s", cmd.Role, l.a.cfg.Node)
	}
	if cmd.To == l.a.cfg.Node {
		return nil // already here
	}
	l.a.stopRole(ctx, l.st, cmd.Role, EventRelease, "move to "+cmd.To, cmd.To, true)
	return nil
}

// remove leaves the cluster: roles back, records deleted, Run returns ErrRemoved.
func (l *loop) remove(ctx context.Context, cmd lease.Command) error {
	a := l.a
	if len(a.held) > 0 && !cmd.Force {
		return fmt.Errorf("takeover: remove %s: node holds %v; drain it first or use --force", a.cfg.Node, a.heldNames())
	}
	for _, role := range a.heldNames() {
		a.stopRole(ctx, l.st, role, EventRelease, "remove", "", true)
	}
	a.appendEvent(ctx, l.st, lease.Event{Node: a.cfg.Node, Kind: EventRemove})
	rctx, cancel := a.etcdCtx(ctx)
	defer cancel()
	if err := l.st.RemoveNode(rctx, a.cfg.Node); err != nil {
		return fmt.Errorf("takeover: remove %s: %w", a.cfg.Node, err)
	}
	return ErrRemoved
}
