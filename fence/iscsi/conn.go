package iscsi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// conn is one logged-in TCP connection: one iSCSI session with one
// connection (MaxConnections=1, ErrorRecoveryLevel=0). It owns two
// goroutines, the reader and the keepalive loop; both exit when the
// connection fails or is shut down, and shutdown waits for them.
//
// Lock order: cmdSem -> seqMu; writeMu and tasksMu are leaves.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	cfg    Config
	log    *zap.Logger
	params Params
	isid   [6]byte
	tsih   uint16

	writeMu sync.Mutex // serialises whole PDUs on nc

	// cmdSem serialises CmdSN assignment + write of non-immediate PDUs so
	// they reach the target in CmdSN order. A channel, so waiting honours ctx.
	cmdSem chan struct{}

	seqMu    sync.Mutex
	cmdSN    uint32        // next CmdSN to assign; guarded by seqMu
	expCmdSN uint32        // guarded by seqMu
	maxCmdSN uint32        // guarded by seqMu
	window   chan struct{} // closed when expCmdSN/maxCmdSN change; guarded by seqMu

	expStatSN atomic.Uint32

	tasksMu sync.Mutex
	tasks   map[uint32]*task // guarded by tasksMu
	nextITT uint32           // guarded by tasksMu
	failed  bool             // guarded by tasksMu: no new tasks once set

	dead     chan struct{} // closed by fail
	failErr  error         // set before dead is closed
	failOnce sync.Once

	// closing is set before our Logout, so the target closing the socket
	// afterwards reads as ErrClosed, not as a failure.
	closing atomic.Bool

	// Counters for tests and debugging.
	pings, nopAnswers atomic.Uint64

	nopReplies chan *pdu // NOP-Out answers to target pings, written by keepalive
	wg         sync.WaitGroup
}

func newConn(nc net.Conn, ls *loginState, params Params, cfg Config, log *zap.Logger) *conn {
	c := &conn{
		nc:         nc,
		br:         bufio.NewReaderSize(nc, 64<<10),
		cfg:        cfg,
		log:        log,
		params:     params,
		isid:       ls.isid,
		tsih:       ls.tsih,
		cmdSem:     make(chan struct{}, 1),
		cmdSN:      ls.cmdSN,
		expCmdSN:   ls.expCmdSN,
		maxCmdSN:   ls.maxCmdSN,
		window:     make(chan struct{}),
		tasks:      map[uint32]*task{},
		nextITT:    1,
		dead:       make(chan struct{}),
		nopReplies: make(chan *pdu, 8),
	}
	c.expStatSN.Store(ls.expStatSN)
	c.wg.Add(2)
	go c.readLoop()
	go c.keepalive()
	return c
}

// fail marks the connection dead with err (first error wins), closes the
// socket so both goroutines exit, and completes every outstanding task
// with err.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.failErr = err
		close(c.dead)
		_ = c.nc.Close()
		c.tasksMu.Lock()
		c.failed = true
		tasks := c.tasks
		c.tasks = map[uint32]*task{}
		c.tasksMu.Unlock()
		for _, t := range tasks {
			t.finish(nil, err)
		}
		if !errors.Is(err, ErrClosed) {
			c.log.Warn("iscsi connection failed", zap.Error(err), zap.Uint16("tsih", c.tsih))
		}
	})
}

// shutdown fails the connection (if not yet) and waits for its goroutines.
func (c *conn) shutdown(err error) {
	c.fail(err)
	c.wg.Wait()
}

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// err returns why the connection died (nil while alive).
func (c *conn) err() error {
	if c.isDead() {
		return c.failErr
	}
	return nil
}

// newTask registers a task under a fresh ITT.
func (c *conn) newTask(kind taskKind) (*task, error) {
	c.tasksMu.Lock()
	defer c.tasksMu.Unlock()
	if c.failed {
		return nil, c.failErr
	}
	for {
		itt := c.nextITT
		c.nextITT++
		if itt == reservedTag {
			continue
		}
		if _, busy := c.tasks[itt]; busy {
			continue
		}
		t := &task{kind: kind, itt: itt, done: make(chan struct{})}
		c.tasks[itt] = t
		return t, nil
	}
}

// takeTask removes and returns the task for itt (nil if none): whoever
// takes a task is the one who finishes it.
func (c *conn) takeTask(itt uint32) *task {
	c.tasksMu.Lock()
	defer c.tasksMu.Unlock()
	t := c.tasks[itt]
	delete(c.tasks, itt)
	return t
}

// peekTask returns the task for itt without removing it.
func (c *conn) peekTask(itt uint32) *task {
	c.tasksMu.Lock()
	defer c.tasksMu.Unlock()
	return c.tasks[itt]
}

// writePDU writes one PDU, stamping ExpStatSN (bytes 28-31 in every
// initiator PDU we send). A write error kills the connection.
func (c *conn) writePDU(p *pdu) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.err(); err != nil {
		return err
	}
	p.put32(28, c.expStatSN.Load())
	bufs, err := p.encode(c.params.HeaderDigest, c.params.DataDigest)
	if err != nil {
		return err
	}
	if c.cfg.NopTimeout > 0 {
		// Bound a write to a target that stopped reading; the keepalive
		// would notice too, but only if enabled.
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.NopTimeout))
	}
	if _, err := bufs.WriteTo(c.nc); err != nil {
		err = fmt.Errorf("%w: write: %v", ErrConnectionLost, err)
		c.fail(err)
		return err
	}
	return nil
}

// currentCmdSN is the CmdSN an immediate PDU carries (not advanced).
func (c *conn) currentCmdSN() uint32 {
	c.seqMu.Lock()
	defer c.seqMu.Unlock()
	return c.cmdSN
}

// sendOrdered assigns the next CmdSN to p (a non-immediate PDU), waiting
// while the target's command window is closed, and writes it. Once a CmdSN
// is assigned the PDU is always written: a gap in CmdSN would stall the
// target's queue for good.
func (c *conn) sendOrdered(ctx context.Context, p *pdu, t *task) error {
	select {
	case c.cmdSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.dead:
		return c.failErr
	}
	defer func() { <-c.cmdSem }()
	for {
		c.seqMu.Lock()
		if !serialLess(c.maxCmdSN, c.cmdSN) {
			sn := c.cmdSN
			c.cmdSN++
			c.seqMu.Unlock()
			p.put32(24, sn)
			if t != nil {
				t.cmdSN = sn
			}
			return c.writePDU(p)
		}
		w := c.window
		c.seqMu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.dead:
			return c.failErr
		}
	}
}

// updateWindow applies ExpCmdSN/MaxCmdSN from a target PDU (RFC 7143
// section 4.2.2.2): ignored when MaxCmdSN < ExpCmdSN-1; each only moves
// forward.
func (c *conn) updateWindow(exp, maxSN uint32) {
	if serialLess(maxSN, exp-1) {
		return
	}
	c.seqMu.Lock()
	defer c.seqMu.Unlock()
	changed := false
	if serialLess(c.expCmdSN, exp) {
		c.expCmdSN, changed = exp, true
	}
	if serialLess(c.maxCmdSN, maxSN) {
		c.maxCmdSN, changed = maxSN, true
	}
	if changed {
		close(c.window)
		c.window = make(chan struct{})
	}
}

// updateStatSN acknowledges a status-carrying PDU's StatSN.
func (c *conn) updateStatSN(statSN uint32) {
	for {
		cur := c.expStatSN.Load()
		if !serialLess(cur, statSN+1) || c.expStatSN.CompareAndSwap(cur, statSN+1) {
			return
		}
	}
}

// serialLess is a < b in 32-bit serial number arithmetic (RFC 1982).
func serialLess(a, b uint32) bool { return a != b && int32(b-a) > 0 }

// readLoop reads PDUs until the connection fails and dispatches them.
func (c *conn) readLoop() {
	defer c.wg.Done()
	for {
		err := c.readOne()
		if err != nil {
			if c.isDead() {
				return
			}
			if c.closing.Load() {
				c.fail(ErrClosed)
				return
			}
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrDigest) && !errors.Is(err, ErrConnectionLost) {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					err = fmt.Errorf("%w: target closed the connection", ErrConnectionLost)
				} else {
					err = fmt.Errorf("%w: read: %v", ErrConnectionLost, err)
				}
			}
			c.fail(err)
			return
		}
	}
}

func (c *conn) readOne() error {
	var p pdu
	if err := readHeader(c.br, c.params.HeaderDigest, &p); err != nil {
		return err
	}
	if p.opcode() == opDataIn {
		return c.handleDataIn(&p)
	}
	n := p.dataSegLen()
	if n > max(c.params.MaxRecvDataSegmentLength, 8192) {
		return fmt.Errorf("%w: %d-byte data segment exceeds our MaxRecvDataSegmentLength %d (opcode 0x%02x)",
			ErrProtocol, n, c.params.MaxRecvDataSegmentLength, p.opcode())
	}
	p.data = make([]byte, n)
	if err := readData(c.br, c.params.DataDigest, &p, p.data); err != nil {
		return err
	}
	return c.dispatch(&p)
}

// dispatch handles every target PDU except Data-In.
func (c *conn) dispatch(p *pdu) error {
	switch p.opcode() {
	case opSCSIResp:
		return c.handleSCSIResponse(p)
	case opR2T:
		return c.handleR2T(p)
	case opNOPIn:
		return c.handleNOPIn(p)
	case opTMFResp, opLogoutResp:
		c.updateWindow(p.u32(28), p.u32(32))
		c.updateStatSN(p.u32(24))
		if t := c.takeTask(p.itt()); t != nil {
			t.finish(p, nil)
		}
		return nil
	case opAsyncMsg:
		return c.handleAsync(p)
	case opReject:
		return c.handleReject(p)
	case opTextResp:
		c.updateWindow(p.u32(28), p.u32(32))
		c.updateStatSN(p.u32(24))
		return nil // we send no Text Requests; nothing waits for it
	}
	return fmt.Errorf("%w: unexpected opcode 0x%02x in full feature phase", ErrProtocol, p.opcode())
}

// handleAsync logs asynchronous events. A target that requests a logout or
// announces a drop gets its wish: we fail the connection now, so the
// outstanding tasks learn it at once, and the next Execute logs in again.
func (c *conn) handleAsync(p *pdu) error {
	c.updateWindow(p.u32(28), p.u32(32))
	c.updateStatSN(p.u32(24))
	event := p.bhs[36]
	c.log.Info("iscsi async message", zap.Uint8("event", event), zap.Uint16("tsih", c.tsih))
	switch event {
	case 1, 2, 3:
		return fmt.Errorf("%w: target async event %d (logout requested / connection drop)", ErrConnectionLost, event)
	}
	return nil
}

// handleReject fails the task whose PDU the target rejected. The rejected
// PDU's header is the data segment.
func (c *conn) handleReject(p *pdu) error {
	c.updateWindow(p.u32(28), p.u32(32))
	c.updateStatSN(p.u32(24))
	if len(p.data) < bhsLen {
		return fmt.Errorf("%w: Reject (reason 0x%02x) without the rejected header", ErrProtocol, p.bhs[2])
	}
	var rejected pdu
	copy(rejected.bhs[:], p.data)
	err := fmt.Errorf("%w: reason 0x%02x, opcode 0x%02x", ErrRejected, p.bhs[2], rejected.opcode())
	if t := c.takeTask(rejected.itt()); t != nil {
		t.finish(nil, err)
		return nil
	}
	c.log.Warn("iscsi reject for unknown task", zap.Error(err))
	return nil
}
