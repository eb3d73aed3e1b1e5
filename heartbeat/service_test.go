package heartbeat

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

const (
	testInterval = 10 * time.Millisecond
	// testTimeout bounds every wait: a hang detector, never a timing assertion.
	testTimeout = 30 * time.Second
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func listen(t *testing.T, key []byte, log *zap.Logger) *Service {
	t.Helper()
	s, err := Listen(Config{Listen: "127.0.0.1:0", Key: key, Interval: testInterval, Log: log})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return s
}

// start runs s until the returned stop is called (also on cleanup); stop waits for Run
// to return, bounded so that a Run deaf to its ctx fails the test instead of hanging it.
func start(t *testing.T, s *Service, self Self) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, self)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Errorf("Run of %s did not return %s after its ctx was cancelled", s.Addr(), testTimeout)
		}
	}
	t.Cleanup(stop)
	return stop
}

// silent is the Self of a Service that only receives.
func silent() (Packet, []string, bool) { return Packet{}, nil, false }

// sendTo is the Self of a Service that always sends p to the given addresses.
func sendTo(p Packet, to ...string) Self {
	return func() (Packet, []string, bool) { return p, to, true }
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// heardAfter waits until s has heard node with a Seq above seq and returns that.
func heardAfter(t *testing.T, ctx context.Context, s *Service, node string, seq uint64) Heard {
	t.Helper()
	var h Heard
	waitFor(t, ctx, node+" heard by "+s.Addr(), func() bool {
		var ok bool
		h, ok = s.LastHeard(node)
		return ok && h.Packet.Seq > seq
	})
	return h
}

func hasMonotonic(tm time.Time) bool { return strings.Contains(tm.String(), " m=") }

func TestListenErrors(t *testing.T) {
	busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	tests := []struct {
		name string
		cfg  Config
		want error // nil: any error
	}{
		{"nil key", Config{Listen: "127.0.0.1:0", Interval: time.Second}, ErrKey},
		{"short key", Config{Listen: "127.0.0.1:0", Key: testKey[:MinKeyLen-1], Interval: time.Second}, ErrKey},
		{"zero interval", Config{Listen: "127.0.0.1:0", Key: testKey}, nil},
		{"negative interval", Config{Listen: "127.0.0.1:0", Key: testKey, Interval: -time.Second}, nil},
		{"empty address", Config{Key: testKey, Interval: time.Second}, nil},
		{"host name", Config{Listen: "localhost:0", Key: testKey, Interval: time.Second}, nil},
		{"no port", Config{Listen: "127.0.0.1", Key: testKey, Interval: time.Second}, nil},
		{"port in use", Config{Listen: busy.LocalAddr().String(), Key: testKey, Interval: time.Second}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Listen(tt.cfg)
			if err == nil {
				start(t, s, silent)() // closes the socket
				t.Fatalf("Listen(%+v) succeeded", tt.cfg)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Listen error = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestServiceHeartbeats: two services with the cluster key hear each other, with
// increasing Seq and At; a third with another key hears neither and is never heard.
func TestServiceHeartbeats(t *testing.T) {
	ctx := testContext(t)
	a, b, c := listen(t, testKey, nil), listen(t, testKey, nil), listen(t, otherKey, nil)
	pa := Packet{Node: "a", NodeID: 1, Lease: 0x1001, Roles: []RoleToken{{"db", 17}}}
	pb := Packet{Node: "b", NodeID: 2, Lease: 0x2002}
	pc := Packet{Node: "c", NodeID: 3, Lease: 0x3003}
	before := time.Now()
	// A bad address first: the others in the list must still be sent to.
	start(t, a, sendTo(pa, "not-an-address", b.Addr(), c.Addr()))
	start(t, b, sendTo(pb, a.Addr(), c.Addr()))
	start(t, c, sendTo(pc, a.Addr(), b.Addr()))

	prev := Heard{At: before}
	for range 5 {
		h := heardAfter(t, ctx, b, "a", prev.Packet.Seq)
		if !hasMonotonic(h.At) {
			t.Fatalf("At %v carries no monotonic clock reading", h.At)
		}
		if !h.At.After(prev.At) || h.At.After(time.Now()) {
			t.Fatalf("Seq %d heard at %v, want after %v (Seq %d) and not in the future",
				h.Packet.Seq, h.At, prev.At, prev.Packet.Seq)
		}
		want := pa
		want.Seq = h.Packet.Seq
		if !equalPacket(h.Packet, want) {
			t.Fatalf("b heard %+v, want %+v", h.Packet, want)
		}
		prev = h
	}
	hb := heardAfter(t, ctx, a, "b", 0)
	if hb.Packet.Lease != pb.Lease || hb.Packet.NodeID != pb.NodeID {
		t.Fatalf("a heard %+v, want %+v", hb.Packet, pb)
	}
	// Give C's receiver more packets before looking: none may count. (Each sender has
	// its own sequence, seeded from the clock when it starts: compare b's with b's.)
	heardAfter(t, ctx, a, "b", hb.Packet.Seq)
	for _, s := range []*Service{a, b} {
		if h, ok := s.LastHeard("c"); ok {
			t.Errorf("%s heard c, whose key differs: %+v", s.Addr(), h)
		}
	}
	for _, node := range []string{"a", "b"} {
		if h, ok := c.LastHeard(node); ok {
			t.Errorf("c, whose key differs, heard %s: %+v", node, h)
		}
	}
	if h, ok := b.LastHeard("b"); ok {
		t.Errorf("b heard itself: %+v", h)
	}
}

// TestServiceSendFalse: a round whose Self says send=false sends nothing.
func TestServiceSendFalse(t *testing.T) {
	ctx := testContext(t)
	a, b := listen(t, testKey, nil), listen(t, testKey, nil)
	var calls atomic.Int64
	var on atomic.Bool
	start(t, b, silent)
	start(t, a, func() (Packet, []string, bool) {
		calls.Add(1)
		return Packet{Node: "a", Lease: 1}, []string{b.Addr()}, on.Load()
	})
	waitFor(t, ctx, "five rounds of a", func() bool { return calls.Load() >= 5 })
	if h, ok := b.LastHeard("a"); ok {
		t.Fatalf("b heard a although a's Self said send=false: %+v", h)
	}
	on.Store(true) // the control: the same setup does deliver once asked to
	heardAfter(t, ctx, b, "a", 0)
}

// TestServiceBadPacketLogged: a packet Marshal rejects is logged, not sent, and the
// loop goes on.
func TestServiceBadPacketLogged(t *testing.T) {
	ctx := testContext(t)
	core, logs := observer.New(zap.ErrorLevel)
	a, b := listen(t, testKey, zap.New(core)), listen(t, testKey, nil)
	var calls atomic.Int64
	start(t, b, silent)
	start(t, a, func() (Packet, []string, bool) {
		calls.Add(1)
		return Packet{Node: ""}, []string{b.Addr()}, true
	})
	waitFor(t, ctx, "three rounds of a", func() bool { return calls.Load() >= 3 })
	waitFor(t, ctx, "the error logged", func() bool {
		return logs.FilterMessage("heartbeat not sent").Len() >= 2
	})
	if h, ok := b.LastHeard(""); ok {
		t.Fatalf("b heard a nameless packet: %+v", h)
	}
}

// rawSender sends hand-made datagrams to one Service from a plain UDP socket.
type rawSender struct {
	t    *testing.T
	conn *net.UDPConn
	to   netip.AddrPort
	sync uint64 // Seq of the last sync marker
}

func newRawSender(t *testing.T, to *Service) *rawSender {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawSender{t: t, conn: conn, to: netip.MustParseAddrPort(to.Addr())}
}

func (r *rawSender) send(p Packet, key []byte) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDPAddrPort(mustMarshal(r.t, p, key), r.to); err != nil {
		r.t.Fatalf("send %+v: %v", p, err)
	}
}

// sendUntil sends p every poll until s has heard p.Node with p's Lease and Seq: a
// datagram may be lost even on loopback.
func (r *rawSender) sendUntil(ctx context.Context, s *Service, p Packet) Heard {
	r.t.Helper()
	var h Heard
	waitFor(r.t, ctx, "a packet of "+p.Node, func() bool {
		var ok bool
		if h, ok = s.LastHeard(p.Node); ok && h.Packet.Lease == p.Lease && h.Packet.Seq == p.Seq {
			return true
		}
		r.send(p, testKey)
		return false
	})
	return h
}

// barrier returns once s has processed every datagram sent before it: datagrams from
// one socket to another over loopback are received in order, and s records them in
// order, so a marker sent after them and recorded means they have been handled.
func (r *rawSender) barrier(ctx context.Context, s *Service) {
	r.t.Helper()
	first := r.sync + 1
	waitFor(r.t, ctx, "the sync marker", func() bool {
		if h, ok := s.LastHeard("sync"); ok && h.Packet.Seq >= first {
			return true
		}
		r.sync++
		r.send(Packet{Node: "sync", Lease: 1, Seq: r.sync}, testKey)
		return false
	})
}

// TestServiceReplay: within one lease a packet whose Seq is not above the last heard
// is dropped (a replay or a reordered datagram); a new lease starts a new life at any
// Seq (a restarted sender).
func TestServiceReplay(t *testing.T) {
	ctx := testContext(t)
	b := listen(t, testKey, nil)
	start(t, b, silent)
	r := newRawSender(t, b)
	life1 := Packet{Node: "a", NodeID: 1, Lease: 100, Seq: 10, Roles: []RoleToken{{"db", 5}}}
	// Sequence numbers continue across lives (Run seeds them from the clock).
	life2 := Packet{Node: "a", NodeID: 1, Lease: 200, Seq: 1000, Roles: []RoleToken{{"db", 6}}}
	at := func(p Packet, seq uint64) Packet { p.Seq = seq; return p }

	heard := r.sendUntil(ctx, b, life1)
	dropped := []struct {
		name string
		p    Packet
		key  []byte
	}{
		{"older seq", at(life1, 5), testKey},
		{"seq 1 of the same lease", at(life1, 1), testKey},
		{"same seq again", life1, testKey},
		{"newer seq under another key", at(life1, 11), otherKey},
	}
	for _, d := range dropped {
		r.send(d.p, d.key)
		r.barrier(ctx, b)
		if h, _ := b.LastHeard("a"); !equalPacket(h.Packet, heard.Packet) || !h.At.Equal(heard.At) {
			t.Fatalf("%s: b recorded %+v at %v, want %+v at %v unchanged",
				d.name, h.Packet, h.At, heard.Packet, heard.At)
		}
	}

	if h := r.sendUntil(ctx, b, at(life1, 11)); !h.At.After(heard.At) {
		t.Fatalf("newer seq recorded at %v, not after %v", h.At, heard.At)
	}
	h := r.sendUntil(ctx, b, life2) // a restarted sender: new lease, larger Seq
	if !equalPacket(h.Packet, life2) {
		t.Fatalf("b recorded %+v, want %+v", h.Packet, life2)
	}
	heard = r.sendUntil(ctx, b, at(life2, 1001))
	for _, replay := range []Packet{life2, at(life1, 12)} { // this life's older seq; the earlier life's newest
		r.send(replay, testKey)
		r.barrier(ctx, b)
		if h, _ := b.LastHeard("a"); !equalPacket(h.Packet, heard.Packet) || !h.At.Equal(heard.At) {
			t.Fatalf("replay %+v: b recorded %+v, want %+v unchanged", replay, h.Packet, heard.Packet)
		}
	}
}

// TestRunStops: Run returns once its ctx is cancelled, having closed its socket and
// ended its goroutines, also when the ctx was cancelled before Run started.
func TestRunStops(t *testing.T) {
	tests := []struct {
		name   string
		before bool // cancel before Run starts
	}{
		{"cancelled while running", false},
		{"cancelled before Run", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			// A plain socket as the peer: it starts no goroutine of its own.
			peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = peer.Close() })
			s := listen(t, testKey, nil)
			addr := s.Addr()
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			if tt.before {
				cancel()
			}
			// Everything running now may stay; what Run starts may not.
			existing := goleak.IgnoreCurrent()
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.Run(runCtx, sendTo(Packet{Node: "s", Lease: 1}, peer.LocalAddr().String()))
			}()
			if !tt.before {
				receiveOne(t, ctx, peer) // Run is running
				cancel()
			}
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("Run did not return after its ctx was cancelled")
			}
			goleak.VerifyNone(t, existing)
			// The port is free again: Run closed the socket.
			conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
			if err != nil {
				t.Fatalf("after Run: %s still bound: %v", addr, err)
			}
			_ = conn.Close()
		})
	}
}

// receiveOne reads one heartbeat from conn, bounded by ctx's deadline.
func receiveOne(t *testing.T, ctx context.Context, conn *net.UDPConn) Packet {
	t.Helper()
	deadline, _ := ctx.Deadline()
	if err := conn.SetReadDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, MaxPacket+1)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("receive a heartbeat: %v", err)
	}
	p, err := Parse(buf[:n], testKey)
	if err != nil {
		t.Fatalf("received a bad heartbeat: %v", err)
	}
	return p
}
