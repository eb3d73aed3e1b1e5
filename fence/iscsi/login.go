package iscsi

import (
	"encoding/binary"
	"fmt"
	"net"
)

// Login stages (CSG/NSG, RFC 7143 section 11.12.3).
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// Login request/response flag bits in BHS byte 1.
const (
	loginTransit  = 0x80
	loginContinue = 0x40
)

// maxLoginRounds bounds the number of request/response exchanges per stage
// so a target that never sets T cannot keep us in login forever (the
// LoginTimeout bounds wall time too).
const maxLoginRounds = 16

// loginState carries the sequence numbers of one login (the connection is
// not yet shared, so no locking).
type loginState struct {
	nc        net.Conn
	cfg       Config
	target    Target
	isid      [6]byte
	tsih      uint16
	cmdSN     uint32
	expStatSN uint32
	expCmdSN  uint32
	maxCmdSN  uint32
	gotStat   bool
}

// exchange sends one login request with keys and returns the target's
// response keys, gathering continuations (C bit) on both sides. It returns
// whether the target set T (transit) and its NSG.
func (ls *loginState) exchange(csg, nsg byte, transit bool, keys []kv) (resp []kv, tr bool, rnsg byte, err error) {
	out := encodeText(keys)
	var in []byte
	for round := 0; ; round++ {
		if round > maxLoginRounds {
			return nil, false, 0, fmt.Errorf("%w: login text continues for more than %d PDUs", ErrProtocol, maxLoginRounds)
		}
		chunk, more := out, false
		if len(chunk) > 8192 { // the target's MaxRecvDataSegmentLength during login is 8192
			chunk, out, more = out[:8192], out[8192:], true
		} else {
			out = nil
		}
		p := ls.request(csg, nsg, transit && !more, more, chunk)
		if err := ls.write(p); err != nil {
			return nil, false, 0, err
		}
		r, err := readPDU(ls.nc, false, false, maxTextLen)
		if err != nil {
			return nil, false, 0, err
		}
		if err := ls.checkResponse(r); err != nil {
			return nil, false, 0, err
		}
		in = append(in, r.data...)
		if len(in) > maxTextLen {
			return nil, false, 0, fmt.Errorf("%w: login response text exceeds %d bytes", ErrProtocol, maxTextLen)
		}
		if more {
			continue // the target answers our partial text with an empty response
		}
		if r.flags()&loginContinue != 0 {
			continue // ask for the rest with an empty request
		}
		resp, err = parseText(in)
		if err != nil {
			return nil, false, 0, err
		}
		if tr := r.flags()&loginTransit != 0; tr {
			return resp, true, r.flags() & 0x03, nil
		}
		return resp, false, 0, nil
	}
}

// request builds a Login Request PDU (RFC 7143 section 11.12).
func (ls *loginState) request(csg, nsg byte, transit, cont bool, data []byte) *pdu {
	p := newPDU(opLoginReq, true)
	b1 := csg << 2
	if transit {
		b1 |= loginTransit | nsg
	}
	if cont {
		b1 |= loginContinue
	}
	p.bhs[1] = b1
	p.bhs[2], p.bhs[3] = 0, 0 // Version-max, Version-min
	copy(p.bhs[8:14], ls.isid[:])
	binary.BigEndian.PutUint16(p.bhs[14:16], ls.tsih)
	p.put32(16, 0) // ITT, constant through the login
	// CID 0 (bytes 20-21): one connection per session.
	p.put32(24, ls.cmdSN)
	p.put32(28, ls.expStatSN)
	p.data = data
	return p
}

func (ls *loginState) write(p *pdu) error {
	bufs, err := p.encode(false, false)
	if err != nil {
		return err
	}
	_, err = bufs.WriteTo(ls.nc)
	return err
}

// checkResponse validates a Login Response and records its sequence numbers.
func (ls *loginState) checkResponse(r *pdu) error {
	switch {
	case r.opcode() == opReject:
		return fmt.Errorf("%w: login request rejected (reason 0x%02x)", ErrProtocol, r.bhs[2])
	case r.opcode() != opLoginResp:
		return fmt.Errorf("%w: opcode 0x%02x during login", ErrProtocol, r.opcode())
	case r.itt() != 0:
		return fmt.Errorf("%w: login response ITT 0x%x, want 0", ErrProtocol, r.itt())
	}
	if class, detail := r.bhs[36], r.bhs[37]; class != 0 {
		le := &LoginError{Class: class, Detail: detail}
		if kvs, err := parseText(r.data); err == nil {
			le.TargetAddress, _ = lookup(kvs, "TargetAddress")
		}
		return le
	}
	if r.bhs[3] != 0 {
		return fmt.Errorf("%w: target chose iSCSI version %d, we speak 0", ErrNegotiation, r.bhs[3])
	}
	ls.tsih = binary.BigEndian.Uint16(r.bhs[14:16])
	ls.expStatSN = r.u32(24) + 1
	ls.expCmdSN, ls.maxCmdSN = r.u32(28), r.u32(32)
	ls.gotStat = true
	return nil
}

// login runs the whole login on nc: security negotiation (None or CHAP),
// then operational negotiation, then the transit to full feature phase.
func (ls *loginState) login() (Params, error) {
	user, secret := ls.target.User, ls.target.Secret
	if user == "" {
		user, secret = ls.cfg.CHAPUser, ls.cfg.CHAPSecret
	}
	if err := ls.security(user, secret); err != nil {
		return Params{}, err
	}
	return ls.operational()
}

func (ls *loginState) security(user, secret string) error {
	keys := []kv{
		{"InitiatorName", ls.cfg.InitiatorName},
		{"SessionType", "Normal"},
		{"TargetName", ls.target.IQN},
	}
	if user == "" {
		keys = append(keys, kv{"AuthMethod", "None"})
		return ls.transitSecurity(keys)
	}
	// Offer CHAP only: offering "CHAP,None" would let a rogue or
	// misconfigured target downgrade us to no authentication.
	keys = append(keys, kv{"AuthMethod", "CHAP"})
	resp, _, _, err := ls.exchange(stageSecurity, stageOperational, false, keys)
	if err != nil {
		return err
	}
	if m, _ := lookup(resp, "AuthMethod"); m != "CHAP" {
		return fmt.Errorf("%w: target answered AuthMethod=%q to CHAP", ErrAuth, m)
	}
	resp, _, _, err = ls.exchange(stageSecurity, stageOperational, false, []kv{{"CHAP_A", "5"}})
	if err != nil {
		return err
	}
	answer, err := chapResponse(resp, user, secret)
	if err != nil {
		return err
	}
	return ls.transitSecurity(answer)
}

// transitSecurity sends keys asking to move to the operational stage and
// repeats (with no keys) until the target agrees.
func (ls *loginState) transitSecurity(keys []kv) error {
	for range maxLoginRounds {
		resp, tr, nsg, err := ls.exchange(stageSecurity, stageOperational, true, keys)
		if err != nil {
			return err
		}
		if m, ok := lookup(resp, "AuthMethod"); ok && m != "None" && m != "CHAP" {
			return fmt.Errorf("%w: target answered AuthMethod=%q", ErrAuth, m)
		}
		if tr {
			if nsg != stageOperational {
				return fmt.Errorf("%w: target moved to stage %d, we asked for %d", ErrProtocol, nsg, stageOperational)
			}
			return nil
		}
		keys = nil
	}
	return fmt.Errorf("%w: target never finished the security stage", ErrNegotiation)
}

func (ls *loginState) operational() (Params, error) {
	offer := operationalOffer(ls.cfg)
	params := defaultParams(ls.cfg.MaxRecvDataSegmentLength)
	keys := offer
	for range maxLoginRounds {
		resp, tr, nsg, err := ls.exchange(stageOperational, stageFullFeature, true, keys)
		if err != nil {
			return Params{}, err
		}
		keys = nil
		for _, p := range resp {
			offered, _ := lookup(offer, p.key)
			reply, err := params.applyAnswer(p.key, p.value, offered)
			if err != nil {
				return Params{}, err
			}
			if reply != nil {
				keys = append(keys, *reply)
			}
		}
		if tr { // replies we still owe are moot: the target left negotiation
			if nsg != stageFullFeature {
				return Params{}, fmt.Errorf("%w: target moved to stage %d, we asked for %d", ErrProtocol, nsg, stageFullFeature)
			}
			if ls.cfg.HeaderDigest && !params.HeaderDigest || ls.cfg.DataDigest && !params.DataDigest {
				return Params{}, fmt.Errorf("%w: CRC32C digests required but not agreed", ErrNegotiation)
			}
			if err := params.check(); err != nil {
				return Params{}, err
			}
			return params, nil
		}
	}
	return Params{}, fmt.Errorf("%w: target never finished the operational stage", ErrNegotiation)
}
