package fence

import (
	"context"
	"fmt"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// Reservation is READ RESERVATION: the persistent reservation, if any.
type Reservation struct {
	Generation uint32
	Held       bool // false: no reservation, anyone may write
	Key        Key  // holder's key (for all-registrants types: 0 or any registrant)
	Type       scsi.ReservationType
}

// Reservation reads the reservation through the first working path.
func (d *Device) Reservation(ctx context.Context) (Reservation, error) {
	data, err := d.readPRIn(ctx, -1, "read reservation", scsi.PRInReadReservation, 64)
	if err != nil {
		return Reservation{}, err
	}
	r, err := scsi.ParseReadReservation(data)
	if err != nil {
		return Reservation{}, fmt.Errorf("fence: read reservation on device %s: %w", d.Name, err)
	}
	return Reservation{Generation: r.Generation, Held: r.Held, Key: Key(r.Key), Type: r.Type}, nil
}

// Registration is one READ FULL STATUS descriptor: who is registered
// through which I_T nexus.
type Registration struct {
	Key        Key
	Holder     bool                 // this nexus holds the reservation
	Type       scsi.ReservationType // when Holder
	AllTgPt    bool
	RelTgtPort uint16
	// Initiator is the initiator port ("iscsi:iqn...,i,0x<isid>"), or the
	// TransportID in hex when it could not be decoded.
	Initiator string
}

// FullStatus reads every registration with its initiator (READ FULL
// STATUS) through the first working path. Not every target implements it;
// then the error matches scsi.ErrIllegalRequest.
func (d *Device) FullStatus(ctx context.Context) (uint32, []Registration, error) {
	data, err := d.readPRIn(ctx, -1, "read full status", scsi.PRInReadFullStatus, 4096)
	if err != nil {
		return 0, nil, err
	}
	fs, err := scsi.ParseReadFullStatus(data)
	if err != nil {
		return 0, nil, fmt.Errorf("fence: read full status on device %s: %w", d.Name, err)
	}
	regs := make([]Registration, 0, len(fs.Descriptors))
	for _, s := range fs.Descriptors {
		r := Registration{Key: Key(s.Key), Holder: s.RHolder, Type: s.Type, AllTgPt: s.AllTgPt, RelTgtPort: s.RelTgtPort}
		if id, err := s.Initiator(); err == nil {
			r.Initiator = id.String()
		} else {
			r.Initiator = fmt.Sprintf("% x", s.TransportID)
		}
		regs = append(regs, r)
	}
	return fs.Generation, regs, nil
}

// Capabilities asks REPORT CAPABILITIES through the first working path.
func (d *Device) Capabilities(ctx context.Context) (scsi.Capabilities, error) {
	resp, _, err := d.first(ctx, "report capabilities", 0, scsi.PersistentReserveIn(scsi.PRInReportCapabilities, 8))
	if err != nil {
		return scsi.Capabilities{}, err
	}
	c, err := scsi.ParseReportCapabilities(resp.DataIn)
	if err != nil {
		return c, fmt.Errorf("fence: report capabilities on device %s: %w", d.Name, err)
	}
	return c, nil
}

// Identity reads VPD page 0x83 on every path and returns the LU's
// canonical identity (scsi.Identity), failing with ErrPathMismatch when the
// paths disagree: fencing through a path to another LU fences nothing.
func (d *Device) Identity(ctx context.Context) (string, error) {
	if len(d.Paths) == 0 {
		return "", fmt.Errorf("fence: identify device %s: %w", d.Name, ErrNoPaths)
	}
	var first string
	for i := range d.Paths {
		resp, err := d.do(ctx, i, "identify", 0, scsi.Inquiry(true, scsi.VPDDeviceIdentifiers, 1024))
		if err != nil {
			return "", err
		}
		ds, err := scsi.ParseVPD83(resp.DataIn)
		if err != nil {
			return "", d.opError("identify", 0, i, err)
		}
		id, err := scsi.Identity(ds)
		if err != nil {
			return "", d.opError("identify", 0, i, err)
		}
		if i == 0 {
			first = id
		} else if id != first {
			return "", d.opError("identify", 0, i, fmt.Errorf("%w: path 0 is %s, path %d is %s", ErrPathMismatch, first, i, id))
		}
	}
	return first, nil
}
