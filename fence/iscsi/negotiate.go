package iscsi

import (
	"fmt"
	"strconv"
)

// Params are the operational parameters in force on a connection after
// login (RFC 7143 section 13).
type Params struct {
	HeaderDigest, DataDigest bool // CRC32C in use
	// MaxRecvDataSegmentLength is what we declared (the target sends at most this).
	MaxRecvDataSegmentLength int
	// MaxXmitDataSegmentLength is what the target declared (we send at most this).
	MaxXmitDataSegmentLength int
	FirstBurstLength         int
	MaxBurstLength           int
	InitialR2T               bool
	ImmediateData            bool
	MaxOutstandingR2T        int
	DataPDUInOrder           bool
	DataSequenceInOrder      bool
	ErrorRecoveryLevel       int
	DefaultTime2Wait         int
	DefaultTime2Retain       int
	MaxConnections           int
	TargetPortalGroupTag     int
	TargetAlias              string
}

// defaultParams are RFC 7143's defaults: what is in force for a key the
// target answers NotUnderstood/Irrelevant, or never answers.
func defaultParams(ourMRDSL int) Params {
	return Params{
		MaxRecvDataSegmentLength: ourMRDSL,
		MaxXmitDataSegmentLength: 8192,
		FirstBurstLength:         65536,
		MaxBurstLength:           262144,
		InitialR2T:               true,
		ImmediateData:            true,
		MaxOutstandingR2T:        1,
		DataPDUInOrder:           true,
		DataSequenceInOrder:      true,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       20,
		MaxConnections:           1,
	}
}

func digestOffer(on bool) string {
	if on {
		return "CRC32C"
	}
	return "None"
}

// operationalOffer is what we propose in the operational stage. We ask for
// ErrorRecoveryLevel=0, one connection, in-order data and DefaultTime2Wait=0
// / DefaultTime2Retain=0: at ERL 0 a dropped connection ends the session and
// its tasks, which is what fencing wants (no task outlives its connection).
func operationalOffer(cfg Config) []kv {
	return []kv{
		{"HeaderDigest", digestOffer(cfg.HeaderDigest)},
		{"DataDigest", digestOffer(cfg.DataDigest)},
		{"MaxRecvDataSegmentLength", strconv.Itoa(cfg.MaxRecvDataSegmentLength)},
		{"InitialR2T", boolText(cfg.InitialR2T)},
		{"ImmediateData", boolText(!cfg.NoImmediateData)},
		{"MaxBurstLength", strconv.Itoa(cfg.MaxBurstLength)},
		{"FirstBurstLength", strconv.Itoa(cfg.FirstBurstLength)},
		{"MaxOutstandingR2T", "1"},
		{"MaxConnections", "1"},
		{"DataPDUInOrder", "Yes"},
		{"DataSequenceInOrder", "Yes"},
		{"ErrorRecoveryLevel", "0"},
		{"DefaultTime2Wait", "0"},
		{"DefaultTime2Retain", "0"},
	}
}

// applyAnswer folds one key of the target's login response into p. offered
// is our proposal for the key ("" if we did not offer it). It returns the
// reply we owe the target when the key was the target's own proposal of a
// key we do not know (NotUnderstood), else nil.
func (p *Params) applyAnswer(key, val, offered string) (*kv, error) {
	if val == valNotUnderstood || val == valIrrelevant || val == valReject {
		if (key == "HeaderDigest" || key == "DataDigest") && offered == "CRC32C" {
			return nil, fmt.Errorf("%w: target answered %s=%s to CRC32C", ErrNegotiation, key, val)
		}
		return nil, nil // the default stays in force
	}
	var err error
	switch key {
	case "HeaderDigest", "DataDigest":
		if val != "None" && val != "CRC32C" || offered != "" && val != offered {
			return nil, fmt.Errorf("%w: %s=%q, offered %q", ErrNegotiation, key, val, offered)
		}
		if key == "HeaderDigest" {
			p.HeaderDigest = val == "CRC32C"
		} else {
			p.DataDigest = val == "CRC32C"
		}
	case "MaxRecvDataSegmentLength": // the target's declaration
		p.MaxXmitDataSegmentLength, err = parseNumber(key, val, 512, maxDataSegLen)
	case "FirstBurstLength", "MaxBurstLength", "MaxOutstandingR2T", "MaxConnections", "ErrorRecoveryLevel", "DefaultTime2Retain":
		err = p.applyMin(key, val, offered)
	case "DefaultTime2Wait":
		p.DefaultTime2Wait, err = parseNumber(key, val, 0, 3600)
	case "InitialR2T", "ImmediateData", "DataPDUInOrder", "DataSequenceInOrder":
		err = p.applyBool(key, val, offered)
	case "TargetPortalGroupTag":
		p.TargetPortalGroupTag, err = parseNumber(key, val, 0, 65535)
	case "TargetAlias":
		p.TargetAlias = val
	case "TargetAddress", "AuthMethod", "TargetName", "SessionType", "InitiatorName", "InitiatorAlias",
		"OFMarker", "IFMarker", "OFMarkInt", "IFMarkInt":
		// Informational, handled by the login state machine, or
		// obsolete markers (we never offer them; "No" is the only answer
		// RFC 7143 allows, so nothing to do).
	default:
		if offered == "" {
			return &kv{key, valNotUnderstood}, nil
		}
	}
	return nil, err
}

// applyMin handles numeric keys whose result is the minimum of both values
// (DefaultTime2Retain included): the answer must not exceed our offer.
func (p *Params) applyMin(key, val, offered string) error {
	hi := maxDataSegLen
	switch key {
	case "MaxOutstandingR2T", "MaxConnections":
		hi = 65535
	case "ErrorRecoveryLevel":
		hi = 2
	case "DefaultTime2Retain":
		hi = 3600
	}
	lo := 512
	if key != "FirstBurstLength" && key != "MaxBurstLength" {
		lo = 0
	}
	n, err := parseNumber(key, val, lo, hi)
	if err != nil {
		return err
	}
	if offered != "" {
		if o, _ := strconv.Atoi(offered); n > o {
			return fmt.Errorf("%w: %s=%d exceeds our offer %d (result is the minimum)", ErrNegotiation, key, n, o)
		}
	}
	switch key {
	case "FirstBurstLength":
		p.FirstBurstLength = n
	case "MaxBurstLength":
		p.MaxBurstLength = n
	case "MaxOutstandingR2T":
		p.MaxOutstandingR2T = max(n, 1)
	case "MaxConnections":
		p.MaxConnections = max(n, 1)
	case "ErrorRecoveryLevel":
		p.ErrorRecoveryLevel = n
	case "DefaultTime2Retain":
		p.DefaultTime2Retain = n
	}
	return nil
}

// applyBool handles the Boolean keys: InitialR2T, DataPDUInOrder and
// DataSequenceInOrder are OR (Yes wins), ImmediateData is AND (No wins).
func (p *Params) applyBool(key, val, offered string) error {
	b, err := parseBool(key, val)
	if err != nil {
		return err
	}
	if offered != "" {
		o := offered == "Yes"
		if key == "ImmediateData" && b && !o || key != "ImmediateData" && !b && o {
			return fmt.Errorf("%w: %s=%s contradicts our offer %s", ErrNegotiation, key, val, offered)
		}
	}
	switch key {
	case "InitialR2T":
		p.InitialR2T = b
	case "ImmediateData":
		p.ImmediateData = b
	case "DataPDUInOrder":
		p.DataPDUInOrder = b
	case "DataSequenceInOrder":
		p.DataSequenceInOrder = b
	}
	return nil
}

// check verifies the negotiated result is one this initiator implements.
func (p *Params) check() error {
	switch {
	case p.ErrorRecoveryLevel != 0:
		return fmt.Errorf("%w: ErrorRecoveryLevel=%d, only 0 is implemented", ErrNegotiation, p.ErrorRecoveryLevel)
	case !p.DataPDUInOrder || !p.DataSequenceInOrder:
		return fmt.Errorf("%w: out-of-order data is not implemented", ErrNegotiation)
	}
	if p.FirstBurstLength > p.MaxBurstLength {
		// RFC 7143 section 13.14: FirstBurstLength must not exceed
		// MaxBurstLength; be conservative instead of failing.
		p.FirstBurstLength = p.MaxBurstLength
	}
	return nil
}
