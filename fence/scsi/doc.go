// Package scsi is the SCSI codec understudy's fencing speaks: it builds
// command descriptor blocks (CDBs) and parameter lists, and parses status,
// sense data and the parameter data devices return (persistent reservations,
// INQUIRY, VPD device identification, READ CAPACITY). It does no I/O: the
// transports (SG_IO in package fence, the userspace initiator in
// fence/iscsi) move the bytes.
//
// References: SPC-4 (persistent reservations, INQUIRY, VPD, sense data),
// SBC-3 (READ/WRITE(16), READ CAPACITY(16), SYNCHRONIZE CACHE(16)), SAM-5
// (status codes).
//
// Safety invariants:
//   - Parsers never panic and never read past the data they were given:
//     truncated or lying length fields yield ErrShortData or a partial result
//     that says so, never a guess (fuzzed: FuzzParseSense, FuzzParseReadKeys,
//     FuzzParseFullStatus, FuzzParseVPD83).
//   - Response.Err maps every non-GOOD status to an error; in particular
//     RESERVATION CONFLICT is always ErrReservationConflict so that a fenced
//     initiator can never mistake rejection for success.
//   - Builders produce exactly the layouts in the standards; each CDB's
//     ALLOCATION LENGTH equals the Command's DataInLen.
package scsi
