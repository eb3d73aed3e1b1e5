package iscsi

import (
	"context"
	"fmt"
)

// logoutCloseSession is Logout reason code 0: close the session.
const logoutCloseSession = 0

// logout sends Logout (close the session) in CmdSN order after the
// commands already sent, and waits for the Logout Response. The caller
// shuts the connection down afterwards whatever the outcome.
func (c *conn) logout(ctx context.Context) error {
	t, err := c.newTask(kindLogout)
	if err != nil {
		return err
	}
	p := newPDU(opLogoutReq, false)
	p.bhs[1] = finalBit | logoutCloseSession
	p.put32(16, t.itt)
	if err := c.sendOrdered(ctx, p, t); err != nil {
		c.takeTask(t.itt)
		return err
	}
	select {
	case <-t.done:
		if t.err != nil {
			return t.err
		}
		if code := t.resp.bhs[2]; code != 0 {
			return fmt.Errorf("%w: logout response 0x%02x", ErrProtocol, code)
		}
		return nil
	case <-ctx.Done():
		c.takeTask(t.itt)
		return ctx.Err()
	}
}
