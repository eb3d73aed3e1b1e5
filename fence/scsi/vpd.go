package scsi

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// VPD page codes.
const (
	VPDSupportedPages    = 0x00
	VPDUnitSerialNumber  = 0x80
	VPDDeviceIdentifiers = 0x83
)

// ErrNoIdentity: the device identification page has no designator that
// names the logical unit, so LUNs cannot be compared across nodes.
var ErrNoIdentity = errors.New("fence/scsi: no logical unit designator in VPD page 0x83")

// DesignatorType is the DESIGNATOR TYPE of a VPD 0x83 designator (SPC-4
// table 592).
type DesignatorType byte

// Designator types.
const (
	DesigVendor         DesignatorType = 0x0
	DesigT10Vendor      DesignatorType = 0x1
	DesigEUI64          DesignatorType = 0x2
	DesigNAA            DesignatorType = 0x3
	DesigRelTgtPort     DesignatorType = 0x4
	DesigTgtPortGroup   DesignatorType = 0x5
	DesigLUGroup        DesignatorType = 0x6
	DesigMD5            DesignatorType = 0x7
	DesigSCSIName       DesignatorType = 0x8
	DesigProtocolPortID DesignatorType = 0x9
	DesigUUID           DesignatorType = 0xA
)

// Association of a designator (what it names).
const (
	AssocLU         = 0x0
	AssocTargetPort = 0x1
	AssocTarget     = 0x2
)

// Code sets.
const (
	CodeSetBinary = 0x1
	CodeSetASCII  = 0x2
	CodeSetUTF8   = 0x3
)

// Designator is one identification descriptor of VPD page 0x83.
type Designator struct {
	ProtocolID  ProtocolID // valid when PIV
	CodeSet     byte
	PIV         bool
	Association byte
	Type        DesignatorType
	Value       []byte
}

// String renders the designator canonically: "naa.6001405..." (NAA),
// "eui.0123..." (EUI-64), "t10.VENDOR ID" (T10 vendor id), the SCSI name
// string itself ("iqn...."), "uuid.<hex>"; other types "type<N>.<hex>".
func (d Designator) String() string {
	switch d.Type {
	case DesigNAA:
		return "naa." + hex.EncodeToString(d.Value)
	case DesigEUI64:
		return "eui." + hex.EncodeToString(d.Value)
	case DesigT10Vendor:
		return "t10." + textValue(d)
	case DesigSCSIName:
		return textValue(d)
	case DesigUUID:
		return "uuid." + hex.EncodeToString(d.Value)
	}
	return fmt.Sprintf("type%d.%s", d.Type, hex.EncodeToString(d.Value))
}

// textValue renders ASCII/UTF-8 designators without padding; binary ones as
// hex so that the result is always printable.
func textValue(d Designator) string {
	if d.CodeSet == CodeSetBinary {
		return hex.EncodeToString(d.Value)
	}
	v := d.Value
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	return strings.TrimRight(strings.ToValidUTF8(string(v), "?"), " ")
}

// ParseVPD83 decodes the device identification VPD page (SPC-4 7.8.6).
// A designator overrunning the page is ErrShortData; designators before it
// are returned.
func ParseVPD83(b []byte) ([]Designator, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: VPD page header needs 4 bytes, have %d", ErrShortData, len(b))
	}
	if b[1] != VPDDeviceIdentifiers {
		return nil, fmt.Errorf("fence/scsi: VPD page code 0x%02x, want 0x83", b[1])
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	page := b[4:]
	var err error
	if n > len(page) {
		err = &TruncatedError{What: "VPD page 0x83", Need: 4 + n, Have: len(b)}
	} else {
		page = page[:n]
	}
	var ds []Designator
	for off := 0; off < len(page); {
		if len(page)-off < 4 {
			return ds, firstErr(err, fmt.Errorf("%w: designator header at %d", ErrShortData, off))
		}
		h := page[off : off+4]
		l := int(h[3])
		if off+4+l > len(page) {
			return ds, firstErr(err, fmt.Errorf("%w: designator at %d needs %d bytes, have %d", ErrShortData, off, 4+l, len(page)-off))
		}
		ds = append(ds, Designator{
			ProtocolID:  ProtocolID(h[0] >> 4),
			CodeSet:     h[0] & 0x0f,
			PIV:         h[1]&0x80 != 0,
			Association: (h[1] >> 4) & 0x03,
			Type:        DesignatorType(h[1] & 0x0f),
			Value:       append([]byte(nil), page[off+4:off+4+l]...),
		})
		off += 4 + l
	}
	return ds, err
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Identity returns the canonical name of the logical unit: the best
// LU-associated designator by uniqueness: NAA (IEEE Registered Extended >
// Registered > others), then EUI-64 (longest), UUID, SCSI name string, T10
// vendor id. Two paths (or two nodes) see the same LU iff their Identity is
// equal; target-port designators are ignored because they differ per path.
func Identity(ds []Designator) (string, error) {
	best, bestRank := Designator{}, 0
	for _, d := range ds {
		if d.Association != AssocLU || len(d.Value) == 0 {
			continue
		}
		if r := identityRank(d); r > bestRank {
			best, bestRank = d, r
		}
	}
	if bestRank == 0 {
		return "", ErrNoIdentity
	}
	return best.String(), nil
}

// identityRank orders designators by how reliably they name one LU
// worldwide; 0 = not usable.
func identityRank(d Designator) int {
	switch d.Type {
	case DesigNAA:
		switch d.Value[0] >> 4 {
		case 6:
			return 100
		case 5:
			return 90
		}
		return 80
	case DesigEUI64:
		return 60 + len(d.Value)
	case DesigUUID:
		return 50
	case DesigSCSIName, DesigT10Vendor:
		if textValue(d) == "" {
			return 0 // only NULs or padding: names nothing
		}
		if d.Type == DesigSCSIName {
			return 40
		}
		return 30
	}
	return 0
}
