package iscsi

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/understudy-ha/understudy/fence/scsi"
	"go.uber.org/zap"
)

// SCSI Command flag bits (BHS byte 1) and Data-In flag bits.
const (
	cmdRead       = 0x40
	cmdWrite      = 0x20
	taskSimple    = 0x01
	dataInStatus  = 0x01 // S: status is in this Data-In
	maxCDBLen     = 16   // longer CDBs need an extended CDB AHS, not implemented
	r2tQueueDepth = 16
)

type taskKind int

const (
	kindSCSI taskKind = iota
	kindNOP
	kindTMF
	kindLogout
)

// task is one outstanding exchange identified by its ITT. The reader fills
// the SCSI fields and calls finish; the issuing goroutine reads them only
// after done is closed. Whoever removes a task from conn.tasks finishes it.
type task struct {
	kind     taskKind
	itt      uint32
	cmdSN    uint32
	lun      uint64
	in       []byte   // Data-In buffer (DataInLen bytes)
	received int      // high-water mark of Data-In; reader only
	out      []byte   // Data-Out source
	r2t      chan r2t // R2Ts for out, from the reader
	done     chan struct{}
	resp     *pdu // final PDU (NOP-In, TMF/Logout response)
	scsi     scsi.Response
	err      error
}

type r2t struct{ ttt, offset, length uint32 }

func (t *task) finish(p *pdu, err error) {
	t.resp, t.err = p, err
	close(t.done)
}

func checkCommand(cmd scsi.Command) error {
	switch {
	case len(cmd.CDB) == 0 || len(cmd.CDB) > maxCDBLen:
		return fmt.Errorf("%w: CDB length %d, want 1-%d", ErrConfig, len(cmd.CDB), maxCDBLen)
	case len(cmd.DataOut) > 0 && cmd.DataInLen > 0:
		return fmt.Errorf("%w: bidirectional commands are not supported", ErrConfig)
	case cmd.DataInLen < 0 || cmd.DataInLen > 1<<30:
		return fmt.Errorf("%w: DataInLen %d, want 0-%d", ErrConfig, cmd.DataInLen, 1<<30)
	case len(cmd.DataOut) > 1<<30:
		return fmt.Errorf("%w: DataOut of %d bytes exceeds %d", ErrConfig, len(cmd.DataOut), 1<<30)
	}
	return nil
}

// execute runs one SCSI command on this connection: it never retries and
// never resends; a connection failure is returned as an error matching
// ErrConnectionLost.
func (c *conn) execute(ctx context.Context, cmd scsi.Command, lun uint64) (scsi.Response, error) {
	if err := checkCommand(cmd); err != nil {
		return scsi.Response{}, err
	}
	if err := ctx.Err(); err != nil { // select below would pick at random
		return scsi.Response{}, err
	}
	t, err := c.newTask(kindSCSI)
	if err != nil {
		return scsi.Response{}, err
	}
	t.lun, t.out, t.r2t = lun, cmd.DataOut, make(chan r2t, r2tQueueDepth)
	if cmd.DataInLen > 0 {
		t.in = make([]byte, cmd.DataInLen)
	}
	p, imm, unsolicited := c.commandPDU(cmd, t)
	if err := c.sendOrdered(ctx, p, t); err != nil {
		c.takeTask(t.itt) // never reached the target, or the connection is gone
		return scsi.Response{}, err
	}
	if unsolicited > imm {
		// Errors kill the connection, which finishes t; wait below sees it.
		_ = c.sendData(t, reservedTag, uint32(imm), uint32(unsolicited-imm))
	}
	return c.wait(ctx, t)
}

// commandPDU builds the SCSI Command PDU with immediate data, and returns
// how many bytes it carries and how many bytes are sent unsolicited in
// total (immediate + unsolicited Data-Out), per RFC 7143 section 4.2.5.2.
func (c *conn) commandPDU(cmd scsi.Command, t *task) (p *pdu, imm, unsolicited int) {
	p = newPDU(opSCSICmd, false)
	flags := byte(taskSimple)
	edtl := cmd.DataInLen
	if cmd.DataInLen > 0 {
		flags |= cmdRead
	}
	if n := len(cmd.DataOut); n > 0 {
		flags |= cmdWrite
		edtl = n
		unsolicitedMax := min(n, c.params.FirstBurstLength)
		if c.params.ImmediateData {
			imm = min(unsolicitedMax, c.params.MaxXmitDataSegmentLength)
		}
		unsolicited = imm
		if !c.params.InitialR2T {
			unsolicited = unsolicitedMax
		}
		p.data = cmd.DataOut[:imm]
	}
	if unsolicited == imm {
		flags |= finalBit // no unsolicited Data-Out follows
	}
	p.bhs[1] = flags
	p.setLUN(t.lun)
	p.put32(16, t.itt)
	p.put32(20, uint32(edtl))
	copy(p.bhs[32:48], cmd.CDB)
	return p, imm, unsolicited
}

// sendData sends buf[offset:offset+length] of t as one Data-Out sequence
// (solicited by ttt, or unsolicited with the reserved tag): PDUs of at
// most the target's MaxRecvDataSegmentLength, DataSN from 0, F on the last.
func (c *conn) sendData(t *task, ttt, offset, length uint32) error {
	maxSeg := uint32(c.params.MaxXmitDataSegmentLength)
	var dataSN uint32
	for sent := uint32(0); sent < length; dataSN++ {
		n := min(maxSeg, length-sent)
		p := newPDU(opDataOut, false)
		if sent+n == length {
			p.bhs[1] = finalBit
		}
		p.setLUN(t.lun)
		p.put32(16, t.itt)
		p.put32(20, ttt)
		p.put32(36, dataSN)
		p.put32(40, offset+sent)
		p.data = t.out[offset+sent : offset+sent+n]
		if err := c.writePDU(p); err != nil {
			return err
		}
		sent += n
	}
	return nil
}

// wait serves R2Ts until the command completes or ctx ends.
func (c *conn) wait(ctx context.Context, t *task) (scsi.Response, error) {
	for {
		select {
		case <-t.done:
			return t.scsi, t.err
		case r := <-t.r2t:
			_ = c.sendData(t, r.ttt, r.offset, r.length) // failure finishes t
		case <-ctx.Done():
			return c.abort(t, ctx.Err())
		}
	}
}

// abort is called when the caller gave up on t. The target still owns the
// task, and a write we stop waiting for must not land later unnoticed, so
// we send ABORT TASK and, if that does not settle it, drop the connection
// (at ErrorRecoveryLevel 0 that aborts every task of the session).
func (c *conn) abort(t *task, cause error) (scsi.Response, error) {
	select {
	case <-t.done: // completed while ctx ended: report what happened
		return t.scsi, t.err
	default:
	}
	// Own bounded context: the caller's ctx is already done, but the
	// abort must still be attempted.
	actx, cancel := context.WithTimeout(context.Background(), c.cfg.AbortTimeout)
	defer cancel()
	code, err := c.taskMgmt(actx, tmfAbortTask, t.lun, t.itt, t.cmdSN)
	if err == nil && code != tmfComplete && code != tmfNoSuchTask {
		err = fmt.Errorf("%w: ABORT TASK answered %s", ErrTaskManagement, tmfResponseText(code))
	}
	if err != nil {
		c.log.Warn("iscsi abort failed; dropping connection", zap.Uint32("itt", t.itt), zap.Error(err))
		c.fail(fmt.Errorf("%w: abort of task 0x%x failed: %v", ErrConnectionLost, t.itt, err))
	}
	c.takeTask(t.itt) // late Data-In for it is discarded
	return scsi.Response{}, fmt.Errorf("command aborted: %w", cause)
}

// handleDataIn reads a Data-In PDU's data straight into its task's buffer.
func (c *conn) handleDataIn(p *pdu) error {
	n := p.dataSegLen()
	if n > c.params.MaxRecvDataSegmentLength {
		return fmt.Errorf("%w: %d-byte Data-In exceeds our MaxRecvDataSegmentLength %d",
			ErrProtocol, n, c.params.MaxRecvDataSegmentLength)
	}
	c.updateWindow(p.u32(28), p.u32(32))
	off := int(p.u32(40))
	t := c.peekTask(p.itt())
	var dst []byte
	if t != nil && t.kind == kindSCSI {
		if off > len(t.in) || n > len(t.in)-off {
			return fmt.Errorf("%w: Data-In offset %d + %d bytes exceeds the %d bytes expected (ITT 0x%x)",
				ErrProtocol, off, n, len(t.in), t.itt)
		}
		dst = t.in[off : off+n]
	} else {
		dst = make([]byte, n) // aborted or unknown task: read and discard
	}
	if err := readData(c.br, c.params.DataDigest, p, dst); err != nil {
		return err
	}
	if t == nil || t.kind != kindSCSI {
		return nil
	}
	t.received = max(t.received, off+n)
	if p.flags()&dataInStatus == 0 {
		return nil
	}
	c.updateStatSN(p.u32(24))
	if t := c.takeTask(p.itt()); t != nil {
		t.scsi = scsi.Response{Status: scsi.Status(p.bhs[3]), DataIn: t.in[:t.received]}
		t.finish(nil, nil)
	}
	return nil
}

// handleSCSIResponse completes a task with its status and sense data (the
// data segment is SenseLength (2 bytes) + sense + response data).
func (c *conn) handleSCSIResponse(p *pdu) error {
	c.updateWindow(p.u32(28), p.u32(32))
	c.updateStatSN(p.u32(24))
	t := c.takeTask(p.itt())
	if t == nil || t.kind != kindSCSI {
		return nil // aborted: nobody waits for it
	}
	if code := p.bhs[2]; code != 0 {
		t.finish(nil, fmt.Errorf("%w: iSCSI response 0x%02x", ErrTargetFailure, code))
		return nil
	}
	var sense []byte
	if len(p.data) >= 2 {
		sl := int(binary.BigEndian.Uint16(p.data[:2]))
		sense = p.data[2 : 2+min(sl, len(p.data)-2)]
	}
	t.scsi = scsi.Response{Status: scsi.Status(p.bhs[3]), Sense: sense, DataIn: t.in[:t.received]}
	t.finish(nil, nil)
	return nil
}

// handleR2T hands an R2T to the goroutine waiting in wait.
func (c *conn) handleR2T(p *pdu) error {
	c.updateWindow(p.u32(28), p.u32(32))
	t := c.peekTask(p.itt())
	if t == nil {
		return nil // aborted
	}
	r := r2t{ttt: p.u32(20), offset: p.u32(40), length: p.u32(44)}
	if t.kind != kindSCSI || r.length == 0 || r.length > uint32(c.params.MaxBurstLength) ||
		uint64(r.offset)+uint64(r.length) > uint64(len(t.out)) {
		return fmt.Errorf("%w: R2T offset %d length %d for %d bytes of data (ITT 0x%x, MaxBurstLength %d)",
			ErrProtocol, r.offset, r.length, len(t.out), t.itt, c.params.MaxBurstLength)
	}
	select {
	case t.r2t <- r:
		return nil
	default:
		return fmt.Errorf("%w: more than %d outstanding R2Ts (ITT 0x%x)", ErrProtocol, r2tQueueDepth, t.itt)
	}
}
