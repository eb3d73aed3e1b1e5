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

// Addr is the address the service receives on.
func (s *Service) Addr() string { return s.conn.LocalAddr().String() }

// Run sends self's heartbeat every interval and receives until ctx ends; it then closes
// the socket and returns once both of its goroutines have.
func (s *Service) Run(ctx context.Context, self Self) {
	var wg sync.WaitGroup
	wg.Go(func() { s.receive() })
	defer wg.Wait()
	defer s.conn.Close() // ends receive
	var seq uint64
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
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("heartbeat receive", zap.Error(err))
			}
			return
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

// record keeps p unless it is older than what was heard from its sender in the same
// lease (a replay or a reordered datagram).
func (s *Service) record(p Packet, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.heard[p.Node]; ok && old.Packet.Lease == p.Lease && p.Seq <= old.Packet.Seq {
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
