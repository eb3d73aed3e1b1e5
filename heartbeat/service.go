package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Config configures a Service.
type Config struct {
	Listen   string        // "ip:port" this node receives on and sends from
	Key      []byte        // the cluster key, at least MinKeyLen bytes
	Interval time.Duration // between heartbeats sent
	Log      *zap.Logger
}

// Heard is what a Service knows about a peer.
type Heard struct {
	At     time.Time // when the last valid heartbeat arrived (monotonic clock)
	Packet Packet
}

// Self returns what this node sends now and to whom ("ip:port" each); send false
// sends nothing this round (e.g. the node holds no role detected by heartbeats).
type Self func() (p Packet, to []string, send bool)

// Service sends this node's heartbeats and receives its peers'.
type Service struct {
	cfg  Config
	conn *net.UDPConn
	log  *zap.Logger

	interval atomic.Int64 // time.Duration between heartbeats; SetInterval changes it

	mu    sync.Mutex // guards heard
	heard map[string]Heard
}

// Listen binds cfg.Listen.
func Listen(cfg Config) (*Service, error) {
	if len(cfg.Key) < MinKeyLen {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(cfg.Key), MinKeyLen)
	}
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("heartbeat: interval %s: want > 0", cfg.Interval)
	}
	ap, err := netip.ParseAddrPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: listen %q: want ip:port: %w", cfg.Listen, err)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("heartbeat: listen on %s: %w", cfg.Listen, err)
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	cfg.Key = append([]byte(nil), cfg.Key...) // the caller may reuse its buffer
	s := &Service{cfg: cfg, conn: conn, log: cfg.Log, heard: map[string]Heard{}}
	s.interval.Store(int64(cfg.Interval))
	return s, nil
}

// SetInterval changes the time between heartbeats from the next one on (the cluster
// spec may change it while the service runs); d <= 0 is ignored.
func (s *Service) SetInterval(d time.Duration) {
	if d > 0 {
		s.interval.Store(int64(d))
	}
}

// Close closes the socket of a service that will not Run (Run closes its own).
func (s *Service) Close() error { return s.conn.Close() }

// Addr is the address the service receives on.
func (s *Service) Addr() string { return s.conn.LocalAddr().String() }

// Run sends self's heartbeat every interval and receives until ctx ends; it then closes
// the socket and returns once both of its goroutines have.
func (s *Service) Run(ctx context.Context, self Self) {
	var wg sync.WaitGroup
	wg.Go(func() { s.receive() })
	defer wg.Wait()
	defer s.conn.Close() // ends receive
	// Sequence numbers continue across the sender's lives (a restarted agent, a new
	// lease): seeded from the wall clock, so a receiver can drop anything not newer than
	// what it heard, replays of an earlier life included. A clock stepped back only
	// makes this node's heartbeats look stale until it catches up: the peer then asks
	// the second check, which finds the agent alive. Liveness only, never safety.
	seq := uint64(time.Now().UnixNano())
	next := time.NewTimer(0)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		}
		next.Reset(time.Duration(s.interval.Load()))
		if p, to, ok := self(); ok {
			seq++
			p.Seq = seq
			s.send(p, to)
		}
	}
}

func (s *Service) send(p Packet, to []string) {
	b, err := p.Marshal(s.cfg.Key)
	if err != nil {
		s.log.Error("heartbeat not sent", zap.Error(err))
		return
	}
	for _, addr := range to {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			continue
		}
		// Best effort: a lost heartbeat is what the miss count is for.
		_, _ = s.conn.WriteToUDPAddrPort(b, ap)
	}
}

func (s *Service) receive() {
	buf := make([]byte, MaxPacket+1)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			s.log.Warn("heartbeat receive", zap.Error(err)) // e.g. ICMP-induced errors: keep receiving
			continue
		}
		at := time.Now()
		p, err := Parse(buf[:n], s.cfg.Key)
		if err != nil {
			s.log.Debug("heartbeat dropped", zap.Stringer("from", from), zap.Error(err))
			continue
		}
		s.record(p, at)
	}
}

// record keeps p unless it is not newer than what was heard from its sender (a replay,
// also of an earlier life, or a reordered datagram).
func (s *Service) record(p Packet, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.heard[p.Node]; ok && p.Seq <= old.Packet.Seq {
		return
	}
	s.heard[p.Node] = Heard{At: at, Packet: p}
}

// LastHeard returns the last valid heartbeat from node.
func (s *Service) LastHeard(node string) (Heard, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.heard[node]
	return h, ok
}
