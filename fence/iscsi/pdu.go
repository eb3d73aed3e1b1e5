package iscsi

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
)

// Opcodes (RFC 7143 section 11.2.1.2). Initiator opcodes are 0x00-0x1f,
// target opcodes 0x20-0x3f.
const (
	opNOPOut      = 0x00
	opSCSICmd     = 0x01
	opTMFReq      = 0x02
	opLoginReq    = 0x03
	opTextReq     = 0x04
	opDataOut     = 0x05
	opLogoutReq   = 0x06
	opSNACKReq    = 0x10
	opNOPIn       = 0x20
	opSCSIResp    = 0x21
	opTMFResp     = 0x22
	opLoginResp   = 0x23
	opTextResp    = 0x24
	opDataIn      = 0x25
	opLogoutResp  = 0x26
	opR2T         = 0x31
	opAsyncMsg    = 0x32
	opReject      = 0x3f
	immediateBit  = 0x40
	finalBit      = 0x80
	bhsLen        = 48
	digestLen     = 4
	reservedTag   = 0xffffffff
	maxDataSegLen = 1<<24 - 1
	// maxAHSLen is what TotalAHSLength (one byte, in 4-byte words) allows.
	maxAHSLen = 255 * 4
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// digest is the iSCSI CRC32C over b, which RFC 7143 transmits least
// significant byte first (the RFC's test vector: 32 zero bytes -> aa 36 91 8a).
func digest(bs ...[]byte) uint32 {
	var c uint32
	for _, b := range bs {
		c = crc32.Update(c, crc32c, b)
	}
	return c
}

// pdu is one iSCSI PDU: the 48-byte basic header segment, optional
// additional header segments and the data segment (without padding).
type pdu struct {
	bhs  [bhsLen]byte
	ahs  []byte
	data []byte
}

func (p *pdu) opcode() byte       { return p.bhs[0] & 0x3f }
func (p *pdu) immediate() bool    { return p.bhs[0]&immediateBit != 0 }
func (p *pdu) flags() byte        { return p.bhs[1] }
func (p *pdu) final() bool        { return p.bhs[1]&finalBit != 0 }
func (p *pdu) itt() uint32        { return p.u32(16) }
func (p *pdu) u32(off int) uint32 { return binary.BigEndian.Uint32(p.bhs[off:]) }
func (p *pdu) put32(off int, v uint32) {
	binary.BigEndian.PutUint32(p.bhs[off:], v)
}

// dataSegLen is the DataSegmentLength field (24 bits).
func (p *pdu) dataSegLen() int {
	return int(p.bhs[5])<<16 | int(p.bhs[6])<<8 | int(p.bhs[7])
}

// ahsLen is TotalAHSLength in bytes.
func (p *pdu) ahsLen() int { return int(p.bhs[4]) * 4 }

func newPDU(op byte, immediate bool) *pdu {
	p := &pdu{}
	p.bhs[0] = op
	if immediate {
		p.bhs[0] |= immediateBit
	}
	return p
}

func (p *pdu) setLUN(lun uint64) { binary.BigEndian.PutUint64(p.bhs[8:16], encodeLUN(lun)) }

// encodeLUN returns the 8-byte SAM LUN structure: peripheral device
// addressing for LUNs below 256, flat space addressing up to 16383.
func encodeLUN(lun uint64) uint64 {
	if lun < 256 {
		return lun << 48
	}
	return (0x4000 | lun&0x3fff) << 48
}

func padLen(n int) int { return (4 - n%4) % 4 }

var zeroPad [4]byte

// encode returns the PDU as the buffers to write (header, digests, data,
// padding) without copying the data segment.
func (p *pdu) encode(headerDigest, dataDigest bool) (net.Buffers, error) {
	if len(p.ahs)%4 != 0 || len(p.ahs) > maxAHSLen {
		return nil, fmt.Errorf("%w: AHS length %d", ErrProtocol, len(p.ahs))
	}
	if len(p.data) > maxDataSegLen {
		return nil, fmt.Errorf("%w: data segment length %d exceeds 2^24-1", ErrProtocol, len(p.data))
	}
	p.bhs[4] = byte(len(p.ahs) / 4)
	n := len(p.data)
	p.bhs[5], p.bhs[6], p.bhs[7] = byte(n>>16), byte(n>>8), byte(n)
	hdr := make([]byte, 0, bhsLen+len(p.ahs)+digestLen)
	hdr = append(hdr, p.bhs[:]...)
	hdr = append(hdr, p.ahs...)
	if headerDigest {
		hdr = binary.LittleEndian.AppendUint32(hdr, digest(hdr))
	}
	bufs := net.Buffers{hdr}
	if n == 0 {
		return bufs, nil
	}
	pad := zeroPad[:padLen(n)]
	bufs = append(bufs, p.data)
	if len(pad) > 0 {
		bufs = append(bufs, pad)
	}
	if dataDigest {
		bufs = append(bufs, binary.LittleEndian.AppendUint32(nil, digest(p.data, pad)))
	}
	return bufs, nil
}

// readHeader reads the BHS, AHS and header digest of the next PDU from r.
// The data segment is left for the caller (see readData).
func readHeader(r io.Reader, headerDigest bool, p *pdu) error {
	if _, err := io.ReadFull(r, p.bhs[:]); err != nil {
		return err
	}
	p.ahs = nil
	if n := p.ahsLen(); n > 0 {
		p.ahs = make([]byte, n)
		if _, err := io.ReadFull(r, p.ahs); err != nil {
			return unexpectedEOF(err)
		}
	}
	if headerDigest {
		var d [digestLen]byte
		if _, err := io.ReadFull(r, d[:]); err != nil {
			return unexpectedEOF(err)
		}
		if got, want := binary.LittleEndian.Uint32(d[:]), digest(p.bhs[:], p.ahs); got != want {
			return fmt.Errorf("%w: header digest 0x%08x, computed 0x%08x (opcode 0x%02x)",
				ErrDigest, got, want, p.opcode())
		}
	}
	return nil
}

// readData reads the data segment announced by p's header into dst (which
// must have exactly p.dataSegLen() bytes), then the padding and data digest.
func readData(r io.Reader, dataDigest bool, p *pdu, dst []byte) error {
	if _, err := io.ReadFull(r, dst); err != nil {
		return unexpectedEOF(err)
	}
	var tail [8]byte
	pad := tail[:padLen(len(dst))]
	if _, err := io.ReadFull(r, pad); err != nil {
		return unexpectedEOF(err)
	}
	if dataDigest && len(dst) > 0 {
		d := tail[4:8]
		if _, err := io.ReadFull(r, d); err != nil {
			return unexpectedEOF(err)
		}
		if got, want := binary.LittleEndian.Uint32(d), digest(dst, pad); got != want {
			return fmt.Errorf("%w: data digest 0x%08x, computed 0x%08x (opcode 0x%02x)",
				ErrDigest, got, want, p.opcode())
		}
	}
	return nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readPDU reads one whole PDU, allocating its data segment. maxData bounds
// the data segment (our MaxRecvDataSegmentLength, or a login limit).
func readPDU(r io.Reader, headerDigest, dataDigest bool, maxData int) (*pdu, error) {
	p := &pdu{}
	if err := readHeader(r, headerDigest, p); err != nil {
		return nil, err
	}
	n := p.dataSegLen()
	if n > maxData {
		return nil, fmt.Errorf("%w: data segment %d bytes exceeds limit %d (opcode 0x%02x)",
			ErrProtocol, n, maxData, p.opcode())
	}
	p.data = make([]byte, n)
	if err := readData(r, dataDigest, p, p.data); err != nil {
		return nil, err
	}
	return p, nil
}
