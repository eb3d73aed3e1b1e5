package iscsi

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"go.uber.org/zap"
)

// Session is an initiator's path to one logical unit: an iSCSI session
// with one TCP connection, re-established on demand after it fails. It is
// safe for concurrent use and satisfies fence.Transport.
//
// Reconnect: when the connection dies, outstanding and later commands on
// it fail with ErrConnectionLost; the next Execute logs in again (same
// InitiatorName and ISID, TSIH 0: a new iSCSI session) and runs the new
// command. A failed command is never resent, and nothing else is sent on
// the new connection on the caller's behalf -- in particular no
// PERSISTENT RESERVE OUT: re-registering a reservation key is the caller's
// decision (a fenced node re-registering by itself would undo its fence).
type Session struct {
	target Target
	cfg    Config
	log    *zap.Logger

	loginSem chan struct{} // one login at a time; a channel so waiting honours ctx

	mu     sync.Mutex
	cur    *conn  // guarded by mu; nil before the first login or after Close
	closed bool   // guarded by mu
	gen    uint64 // guarded by mu: logins so far
}

// Nexus identifies the current iSCSI session: the I_T nexus persistent
// reservations are registered for (see doc.go for tgtd's behaviour).
type Nexus struct {
	ISID [6]byte
	// TSIH is the target-assigned session handle of the current login.
	TSIH uint16
	// Generation counts successful logins (1 after Dial). A change means a
	// new session: with tgtd, registrations made on the old one do not
	// carry over.
	Generation uint64
	Connected  bool
}

// Dial logs in to t and returns a ready session. ctx bounds the login (as
// does cfg.LoginTimeout).
func Dial(ctx context.Context, t Target, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkName(t.IQN); err != nil {
		return nil, fmt.Errorf("%w: Target.IQN: %v", ErrConfig, err)
	}
	if t.LUN > maxLUN {
		return nil, fmt.Errorf("%w: Target.LUN %d exceeds %d", ErrConfig, t.LUN, maxLUN)
	}
	s := &Session{
		target:   t,
		cfg:      cfg,
		log:      cfg.Logger.With(zap.Stringer("target", t), zap.String("isid", hex.EncodeToString(cfg.ISID[:]))),
		loginSem: make(chan struct{}, 1),
	}
	if _, err := s.conn(ctx); err != nil {
		return nil, fmt.Errorf("fence/iscsi: dial %s: %w", t, err)
	}
	return s, nil
}

// Target returns the target this session logs in to.
func (s *Session) Target() Target { return s.target }

// Execute sends cmd to the session's LUN and returns the device server's
// answer. The error is non-nil only for transport failures (connection
// lost, login failed, ctx done, session closed): every SCSI status comes
// back as a Response. When ctx ends first the command is aborted (ABORT
// TASK, or the connection is dropped) before Execute returns.
func (s *Session) Execute(ctx context.Context, cmd scsi.Command) (scsi.Response, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return scsi.Response{}, s.wrap(cmd, err)
	}
	resp, err := c.execute(ctx, cmd, s.target.LUN)
	if err != nil {
		return scsi.Response{}, s.wrap(cmd, err)
	}
	return resp, nil
}

func (s *Session) wrap(cmd scsi.Command, err error) error {
	op := -1
	if len(cmd.CDB) > 0 {
		op = int(cmd.CDB[0])
	}
	return fmt.Errorf("fence/iscsi: command 0x%02x on %s: %w", op, s.target, err)
}

// Ping round-trips a NOP-Out/NOP-In on the current connection (no
// reconnect) and returns the round-trip time.
func (s *Session) Ping(ctx context.Context) (time.Duration, error) {
	c, err := s.live()
	if err != nil {
		return 0, err
	}
	return c.ping(ctx)
}

// ResetLUN sends LOGICAL UNIT RESET to the session's LUN.
//
// WARNING: this aborts every task of every initiator on the LU and raises
// a UNIT ATTENTION for all of them; persistent reservations survive it.
func (s *Session) ResetLUN(ctx context.Context) error {
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	return c.resetLUN(ctx, s.target.LUN)
}

// Nexus describes the current session.
func (s *Session) Nexus() Nexus {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := Nexus{ISID: s.cfg.ISID, Generation: s.gen}
	if s.cur != nil {
		n.TSIH = s.cur.tsih
		n.Connected = !s.cur.isDead()
	}
	return n
}

// Params returns the parameters negotiated by the current login.
func (s *Session) Params() Params {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return Params{}
	}
	return s.cur.params
}

// live returns the current connection if it is alive.
func (s *Session) live() (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.cur == nil || s.cur.isDead() {
		return nil, fmt.Errorf("%w: not connected", ErrConnectionLost)
	}
	return s.cur, nil
}

// conn returns a live connection, logging in again if the current one died.
func (s *Session) conn(ctx context.Context) (*conn, error) {
	if c, err := s.live(); err == nil || errors.Is(err, ErrClosed) {
		return c, err
	}
	select {
	case s.loginSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.loginSem }()
	if c, err := s.live(); err == nil || errors.Is(err, ErrClosed) {
		return c, err // someone else logged in meanwhile
	}
	s.mu.Lock()
	old := s.cur
	s.mu.Unlock()
	if old != nil {
		old.shutdown(old.err()) // already dead: just wait for its goroutines
	}
	c, err := s.login(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed { // Close ran during the login; it waits for us via loginSem
		s.mu.Unlock()
		c.shutdown(ErrClosed)
		return nil, ErrClosed
	}
	s.cur = c
	s.gen++
	s.mu.Unlock()
	s.log.Info("iscsi logged in", zap.Uint16("tsih", c.tsih), zap.Uint64("generation", s.Nexus().Generation),
		zap.Bool("header_digest", c.params.HeaderDigest), zap.Bool("data_digest", c.params.DataDigest))
	s.log.Debug("iscsi negotiated parameters", zap.Any("params", c.params))
	return c, nil
}

// login dials TCP and runs the login, bounded by ctx and LoginTimeout.
func (s *Session) login(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LoginTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.target.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: connect %s: %v", ErrConnectionLost, s.target.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	// Unblock the login's reads and writes if ctx is cancelled early.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	ls := &loginState{nc: nc, cfg: s.cfg, target: s.target, isid: s.cfg.ISID, cmdSN: 1}
	params, err := ls.login()
	if !stop() || err != nil {
		_ = nc.Close()
		switch cerr := ctx.Err(); {
		case cerr != nil && err != nil:
			err = fmt.Errorf("login: %w (%v)", cerr, err)
		case cerr != nil:
			err = fmt.Errorf("login: %w", cerr)
		default:
			err = fmt.Errorf("login: %w", err)
		}
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return newConn(nc, ls, params, s.cfg, s.log), nil
}

// Close logs out (bounded by ctx and DefaultLogoutTimeout) and closes the
// connection. It is idempotent; later calls return nil. After Close every
// method returns ErrClosed.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.cur
	s.mu.Unlock()
	var err error
	if c != nil && !c.isDead() {
		// Own bound on top of ctx: a target that never answers the
		// logout must not hold Close forever.
		lctx, cancel := context.WithTimeout(ctx, DefaultLogoutTimeout)
		c.closing.Store(true)
		err = c.logout(lctx)
		cancel()
	}
	if c != nil {
		c.shutdown(ErrClosed)
	}
	// Wait for a login racing with Close to notice and tear itself down.
	select {
	case s.loginSem <- struct{}{}:
		<-s.loginSem
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("fence/iscsi: logout from %s: %w", s.target, err)
	}
	return nil
}
