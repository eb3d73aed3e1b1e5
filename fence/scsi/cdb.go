package scsi

import (
	"encoding/binary"
	"fmt"
)

// Operation codes (SPC-4 / SBC-3).
const (
	OpTestUnitReady        = 0x00
	OpInquiry              = 0x12
	OpPersistentReserveIn  = 0x5E
	OpPersistentReserveOut = 0x5F
	OpRead16               = 0x88
	OpWrite16              = 0x8A
	OpSynchronizeCache16   = 0x91
	OpServiceActionIn16    = 0x9E
	saReadCapacity16       = 0x10
)

// TestUnitReady builds TEST UNIT READY (6-byte CDB, no data). It is the
// cheapest command to consume a pending UNIT ATTENTION.
func TestUnitReady() Command {
	return Command{CDB: make([]byte, 6)}
}

// Inquiry builds INQUIRY. evpd=false with page 0 asks for standard INQUIRY
// data; evpd=true asks for the vital product data page (0x83 = device
// identification). alloc is the allocation length (at most 65535).
func Inquiry(evpd bool, page byte, alloc uint16) Command {
	cdb := make([]byte, 6)
	cdb[0] = OpInquiry
	if evpd {
		cdb[1] = 0x01
	}
	cdb[2] = page
	binary.BigEndian.PutUint16(cdb[3:5], alloc)
	return Command{CDB: cdb, DataInLen: int(alloc)}
}

// ReadCapacity16 builds READ CAPACITY(16) (SERVICE ACTION IN(16), SA 0x10)
// asking for the 32-byte parameter data ParseReadCapacity16 decodes.
func ReadCapacity16() Command {
	const alloc = 32
	cdb := make([]byte, 16)
	cdb[0] = OpServiceActionIn16
	cdb[1] = saReadCapacity16
	binary.BigEndian.PutUint32(cdb[10:14], alloc)
	return Command{CDB: cdb, DataInLen: alloc}
}

// rw16 fills the common layout of READ(16), WRITE(16) and SYNCHRONIZE
// CACHE(16): opcode, flags byte, 8-byte LBA, 4-byte block count.
func rw16(op, flags byte, lba uint64, blocks uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = op
	cdb[1] = flags
	binary.BigEndian.PutUint64(cdb[2:10], lba)
	binary.BigEndian.PutUint32(cdb[10:14], blocks)
	return cdb
}

const fuaBit = 0x08 // byte 1 bit 3 of READ/WRITE(16): force unit access

// Read16 builds READ(16) of blocks logical blocks of blockSize bytes from
// lba. fua forces the read from the medium (bypassing the device's cache).
func Read16(lba uint64, blocks uint32, fua bool, blockSize int) Command {
	var f byte
	if fua {
		f = fuaBit
	}
	return Command{CDB: rw16(OpRead16, f, lba, blocks), DataInLen: int(blocks) * blockSize}
}

// Write16 builds WRITE(16) of blocks logical blocks starting at lba with
// data (len(data) must be blocks times the block size; the device rejects
// anything else). fua makes the write durable before GOOD status.
func Write16(lba uint64, blocks uint32, fua bool, data []byte) Command {
	var f byte
	if fua {
		f = fuaBit
	}
	return Command{CDB: rw16(OpWrite16, f, lba, blocks), DataOut: data}
}

// SynchronizeCache16 builds SYNCHRONIZE CACHE(16); lba 0 and blocks 0 mean
// the whole medium.
func SynchronizeCache16(lba uint64, blocks uint32) Command {
	return Command{CDB: rw16(OpSynchronizeCache16, 0, lba, blocks)}
}

// PRInAction is a PERSISTENT RESERVE IN service action (SPC-4 table 162).
type PRInAction byte

// PERSISTENT RESERVE IN service actions.
const (
	PRInReadKeys           PRInAction = 0x00
	PRInReadReservation    PRInAction = 0x01
	PRInReportCapabilities PRInAction = 0x02
	PRInReadFullStatus     PRInAction = 0x03
)

func (a PRInAction) String() string {
	switch a {
	case PRInReadKeys:
		return "READ KEYS"
	case PRInReadReservation:
		return "READ RESERVATION"
	case PRInReportCapabilities:
		return "REPORT CAPABILITIES"
	case PRInReadFullStatus:
		return "READ FULL STATUS"
	}
	return fmt.Sprintf("PR IN action 0x%02x", byte(a))
}

// PersistentReserveIn builds PERSISTENT RESERVE IN (10-byte CDB) with
// service action sa and allocation length alloc.
func PersistentReserveIn(sa PRInAction, alloc uint16) Command {
	cdb := make([]byte, 10)
	cdb[0] = OpPersistentReserveIn
	cdb[1] = byte(sa) & 0x1f
	binary.BigEndian.PutUint16(cdb[7:9], alloc)
	return Command{CDB: cdb, DataInLen: int(alloc)}
}
