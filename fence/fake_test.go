package fence

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// fakeLU is a minimal in-memory SPC-4 persistent reservation model for the
// unit tests of retry and verification logic. It is NOT a substitute for
// the tgtd tests (tgtd_test.go), which exercise a real target.
type fakeLU struct {
	mu     sync.Mutex
	gen    uint32
	regs   map[int]uint64 // nexus -> key
	holder int            // nexus holding the reservation, -1 none
	typ    scsi.ReservationType
	ua     map[int][]byte // pending unit attention sense per nexus
	writes int
	// noAbort rejects PREEMPT AND ABORT like tgtd 1.0.85 (ILLEGAL REQUEST).
	noAbort bool
}

func newFakeLU() *fakeLU {
	return &fakeLU{regs: map[int]uint64{}, holder: -1, ua: map[int][]byte{}}
}

// fakePath is one I_T nexus to a fakeLU, with scripted faults.
type fakePath struct {
	lu    *fakeLU
	nexus int
	mu    sync.Mutex
	// script is consumed first: each entry is returned instead of running
	// the command (a Response, or an error for a transport failure).
	script []fakeStep
	cmds   []byte // opcodes seen, for assertions
	down   bool   // every command fails with a transport error
}

type fakeStep struct {
	resp scsi.Response
	err  error
}

var errFakeTransport = errors.New("fake: connection reset")

func senseBytes(key scsi.SenseKey, asc, ascq byte) []byte {
	return []byte{0x70, 0, byte(key), 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0}
}

func (p *fakePath) Execute(ctx context.Context, cmd scsi.Command) (scsi.Response, error) {
	if err := ctx.Err(); err != nil {
		return scsi.Response{}, err
	}
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd.CDB[0])
	if p.down {
		p.mu.Unlock()
		return scsi.Response{}, errFakeTransport
	}
	if len(p.script) > 0 {
		s := p.script[0]
		p.script = p.script[1:]
		p.mu.Unlock()
		return s.resp, s.err
	}
	p.mu.Unlock()
	return p.lu.exec(p.nexus, cmd), nil
}

func (p *fakePath) opcodes() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.cmds...)
}

func conflict() scsi.Response { return scsi.Response{Status: scsi.StatusReservationConflict} }

func (l *fakeLU) exec(n int, cmd scsi.Command) scsi.Response {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ua := l.ua[n]; ua != nil && cmd.CDB[0] != scsi.OpInquiry {
		delete(l.ua, n)
		return scsi.Response{Status: scsi.StatusCheckCondition, Sense: ua}
	}
	switch cmd.CDB[0] {
	case scsi.OpTestUnitReady:
		return scsi.Response{}
	case scsi.OpPersistentReserveIn:
		return l.prIn(scsi.PRInAction(cmd.CDB[1] & 0x1f))
	case scsi.OpPersistentReserveOut:
		return l.prOut(n, scsi.PROutAction(cmd.CDB[1]&0x1f), scsi.ReservationType(cmd.CDB[2]&0xf), cmd.DataOut)
	case scsi.OpWrite16:
		if l.holder >= 0 && l.regs[n] == 0 {
			return conflict()
		}
		l.writes++
		return scsi.Response{}
	}
	return scsi.Response{Status: scsi.StatusCheckCondition, Sense: senseBytes(scsi.SenseIllegalRequest, 0x20, 0)}
}

func (l *fakeLU) prIn(sa scsi.PRInAction) scsi.Response {
	var body []byte
	switch sa {
	case scsi.PRInReadKeys:
		for n := 0; n < 16; n++ {
			if k, ok := l.regs[n]; ok {
				body = binary.BigEndian.AppendUint64(body, k)
			}
		}
	case scsi.PRInReadReservation:
		if l.holder >= 0 {
			body = make([]byte, 16)
			binary.BigEndian.PutUint64(body, l.regs[l.holder])
			body[13] = byte(l.typ)
		}
	default:
		return scsi.Response{Status: scsi.StatusCheckCondition, Sense: senseBytes(scsi.SenseIllegalRequest, 0x24, 0)}
	}
	h := make([]byte, 8)
	binary.BigEndian.PutUint32(h, l.gen)
	binary.BigEndian.PutUint32(h[4:], uint32(len(body)))
	return scsi.Response{DataIn: append(h, body...)}
}

func (l *fakeLU) prOut(n int, sa scsi.PROutAction, typ scsi.ReservationType, p []byte) scsi.Response {
	if sa == scsi.PROutPreemptAndAbort && l.noAbort {
		return scsi.Response{Status: scsi.StatusCheckCondition, Sense: senseBytes(scsi.SenseIllegalRequest, 0x24, 0)}
	}
	key, sark := binary.BigEndian.Uint64(p[0:8]), binary.BigEndian.Uint64(p[8:16])
	cur, registered := l.regs[n]
	switch sa {
	case scsi.PROutRegister, scsi.PROutRegisterAndIgnoreExisting:
		if sa == scsi.PROutRegister && key != cur {
			return conflict()
		}
		if sark == 0 {
			delete(l.regs, n)
			if l.holder == n {
				l.holder = -1
			}
		} else {
			l.regs[n] = sark
		}
		l.gen++
		return scsi.Response{}
	}
	if !registered || key != cur {
		return conflict()
	}
	switch sa {
	case scsi.PROutReserve:
		if l.holder >= 0 && l.holder != n {
			return conflict()
		}
		l.holder, l.typ = n, typ
	case scsi.PROutPreempt, scsi.PROutPreemptAndAbort:
		found := false
		for m, k := range l.regs {
			if k == sark {
				found = true
				delete(l.regs, m)
				l.ua[m] = senseBytes(scsi.SenseUnitAttention, 0x2A, 0x05)
				if l.holder == m {
					l.holder, l.typ = n, typ
				}
			}
		}
		if !found {
			return conflict()
		}
		l.gen++
	case scsi.PROutRelease:
		if l.holder == n {
			l.holder = -1
		}
	case scsi.PROutClear:
		l.regs, l.holder = map[int]uint64{}, -1
		l.gen++
	}
	return scsi.Response{}
}

// fakeDevice returns a Device with one fakePath per nexus.
func fakeDevice(lu *fakeLU, nexuses ...int) (*Device, []*fakePath) {
	d := &Device{Name: "fake", Retry: RetryPolicy{BaseDelay: 1, MaxDelay: 1}}
	var ps []*fakePath
	for _, n := range nexuses {
		p := &fakePath{lu: lu, nexus: n}
		ps = append(ps, p)
		d.Paths = append(d.Paths, p)
	}
	return d, ps
}
