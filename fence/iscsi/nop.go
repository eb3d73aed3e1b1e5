package iscsi

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// ping sends a NOP-Out ping (immediate, so it does not consume a CmdSN)
// and waits for the matching NOP-In.
func (c *conn) ping(ctx context.Context) (time.Duration, error) {
	t, err := c.sendPing()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-t.done:
		if t.err != nil {
			return 0, t.err
		}
		return time.Since(start), nil
	case <-ctx.Done():
		c.takeTask(t.itt)
		return 0, ctx.Err()
	}
}

func (c *conn) sendPing() (*task, error) {
	t, err := c.newTask(kindNOP)
	if err != nil {
		return nil, err
	}
	p := newPDU(opNOPOut, true)
	p.bhs[1] = finalBit
	p.put32(16, t.itt)
	p.put32(20, reservedTag)
	p.put32(24, c.currentCmdSN())
	if err := c.writePDU(p); err != nil {
		c.takeTask(t.itt)
		return nil, err
	}
	return t, nil
}

// handleNOPIn completes our ping (ITT valid) and queues the answer to a
// target ping (TTT valid). The reader never writes, so a slow socket
// cannot stop it from reading; the keepalive goroutine writes the answer.
func (c *conn) handleNOPIn(p *pdu) error {
	c.updateWindow(p.u32(28), p.u32(32))
	if p.itt() != reservedTag {
		c.updateStatSN(p.u32(24))
		if t := c.takeTask(p.itt()); t != nil {
			t.finish(p, nil)
		}
	}
	if ttt := p.u32(20); ttt != reservedTag {
		reply := newPDU(opNOPOut, true)
		reply.bhs[1] = finalBit
		copy(reply.bhs[8:16], p.bhs[8:16])
		reply.put32(16, reservedTag)
		reply.put32(20, ttt)
		reply.data = p.data
		select {
		case c.nopReplies <- reply:
		default:
			c.log.Warn("iscsi dropping NOP-In answer: queue full", zap.Uint32("ttt", ttt))
		}
	}
	return nil
}

// keepalive answers target pings and, every NopInterval, pings the target;
// a ping unanswered after NopTimeout fails the connection. It exits when
// the connection dies.
func (c *conn) keepalive() {
	defer c.wg.Done()
	var tick <-chan time.Time
	if c.cfg.NopInterval > 0 {
		tk := time.NewTicker(c.cfg.NopInterval)
		defer tk.Stop()
		tick = tk.C
	}
	var pending *task
	var pendingDone <-chan struct{}
	timeout := time.NewTimer(time.Hour)
	timeout.Stop()
	defer timeout.Stop()
	for {
		select {
		case <-c.dead:
			return
		case r := <-c.nopReplies:
			r.put32(24, c.currentCmdSN())
			if c.writePDU(r) == nil { // failure kills the connection
				c.nopAnswers.Add(1)
			}
		case <-tick:
			if pending != nil {
				continue
			}
			t, err := c.sendPing()
			if err != nil {
				return
			}
			pending, pendingDone = t, t.done
			timeout.Reset(c.cfg.NopTimeout)
		case <-pendingDone:
			if pending.err == nil {
				c.pings.Add(1)
			}
			pending, pendingDone = nil, nil
			timeout.Stop()
		case <-timeout.C:
			if pending != nil {
				c.fail(fmt.Errorf("%w: no NOP-In within %v", ErrKeepaliveTimeout, c.cfg.NopTimeout))
				return
			}
		}
	}
}
