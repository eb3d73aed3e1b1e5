package scsi

import "fmt"

// ascNames describes the additional sense codes fencing and block I/O meet
// most (SPC-4 table D.1). Others render as "asc 0xNN ascq 0xNN".
var ascNames = map[uint16]string{
	0x0000: "no additional sense information",
	0x0400: "logical unit not ready, cause not reportable",
	0x0401: "logical unit is in process of becoming ready",
	0x0402: "logical unit not ready, initializing command required",
	0x0403: "logical unit not ready, manual intervention required",
	0x0404: "logical unit not ready, format in progress",
	0x0407: "logical unit not ready, operation in progress",
	0x0409: "logical unit not ready, self-test in progress",
	0x040A: "logical unit not accessible, asymmetric access state transition",
	0x040B: "logical unit not accessible, target port in standby state",
	0x040C: "logical unit not accessible, target port in unavailable state",
	0x0411: "logical unit not ready, notify (enable spinup) required",
	0x0800: "logical unit communication failure",
	0x0C00: "write error",
	0x1100: "unrecovered read error",
	0x1A00: "parameter list length error",
	0x2000: "invalid command operation code",
	0x2100: "logical block address out of range",
	0x2400: "invalid field in cdb",
	0x2500: "logical unit not supported",
	0x2600: "invalid field in parameter list",
	0x2602: "parameter value invalid",
	0x2700: "write protected",
	0x2800: "not ready to ready change, medium may have changed",
	0x2900: "power on, reset, or bus device reset occurred",
	0x2901: "power on occurred",
	0x2902: "scsi bus reset occurred",
	0x2903: "bus device reset function occurred",
	0x2904: "device internal reset",
	0x2907: "i_t nexus loss occurred",
	0x2A00: "parameters changed",
	0x2A01: "mode parameters changed",
	0x2A03: "reservations preempted",
	0x2A04: "reservations released",
	0x2A05: "registrations preempted",
	0x2A06: "asymmetric access state changed",
	0x2A09: "capacity data has changed",
	0x2C00: "command sequence error",
	0x2F00: "commands cleared by another initiator",
	0x3A00: "medium not present",
	0x3F03: "inquiry data has changed",
	0x3F0E: "reported luns data has changed",
	0x4700: "scsi parity error",
	0x4B00: "data phase error",
	0x5500: "system resource failure",
}

// ASCString describes an ASC/ASCQ pair (SPC-4 annex D), e.g.
// ASCString(0x2A, 0x05) == "registrations preempted".
func ASCString(asc, ascq byte) string {
	if s, ok := ascNames[uint16(asc)<<8|uint16(ascq)]; ok {
		return s
	}
	if asc == 0x04 {
		return fmt.Sprintf("logical unit not ready (ascq 0x%02x)", ascq)
	}
	if asc == 0x29 {
		return fmt.Sprintf("power on or reset (ascq 0x%02x)", ascq)
	}
	return fmt.Sprintf("asc 0x%02x ascq 0x%02x", asc, ascq)
}
