package iscsi

import (
	"context"
	"fmt"
)

// Task management functions (RFC 7143 section 11.5.1) we use.
const (
	tmfAbortTask        = 1
	tmfLogicalUnitReset = 5
)

// Task management responses (RFC 7143 section 11.6.1).
const (
	tmfComplete   = 0
	tmfNoSuchTask = 1
)

func tmfResponseText(code byte) string {
	switch code {
	case 0:
		return "function complete"
	case 1:
		return "task does not exist"
	case 2:
		return "LUN does not exist"
	case 3:
		return "task still allegiant"
	case 4:
		return "task allegiance reassignment not supported"
	case 5:
		return "task management function not supported"
	case 6:
		return "function authorization failed"
	case 255:
		return "function rejected"
	}
	return fmt.Sprintf("response 0x%02x", code)
}

// taskMgmt sends an immediate Task Management Function Request and waits
// for its response code. ref/refCmdSN name the task for ABORT TASK
// (reservedTag otherwise).
func (c *conn) taskMgmt(ctx context.Context, fn byte, lun uint64, ref, refCmdSN uint32) (byte, error) {
	t, err := c.newTask(kindTMF)
	if err != nil {
		return 0, err
	}
	p := newPDU(opTMFReq, true)
	p.bhs[1] = finalBit | fn
	p.setLUN(lun)
	p.put32(16, t.itt)
	p.put32(20, ref)
	p.put32(24, c.currentCmdSN())
	p.put32(32, refCmdSN)
	if err := c.writePDU(p); err != nil {
		c.takeTask(t.itt)
		return 0, err
	}
	select {
	case <-t.done:
		if t.err != nil {
			return 0, t.err
		}
		return t.resp.bhs[2], nil
	case <-ctx.Done():
		c.takeTask(t.itt)
		return 0, ctx.Err()
	}
}

// resetLUN sends LOGICAL UNIT RESET.
func (c *conn) resetLUN(ctx context.Context, lun uint64) error {
	code, err := c.taskMgmt(ctx, tmfLogicalUnitReset, lun, reservedTag, 0)
	if err != nil {
		return err
	}
	if code != tmfComplete {
		return fmt.Errorf("%w: LOGICAL UNIT RESET answered %s", ErrTaskManagement, tmfResponseText(code))
	}
	return nil
}
