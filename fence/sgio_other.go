//go:build !linux

package fence

import (
	"context"
	"fmt"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// SGIO is the SG_IO transport; SG_IO exists on Linux only.
type SGIO struct{}

// OpenSGIO fails with ErrNotSupported outside Linux.
func OpenSGIO(path string) (*SGIO, error) {
	return nil, fmt.Errorf("fence: open %s for SG_IO: %w", path, ErrNotSupported)
}

// Path is empty outside Linux.
func (s *SGIO) Path() string { return "" }

// Close does nothing outside Linux.
func (s *SGIO) Close() error { return nil }

// Execute fails with ErrNotSupported outside Linux.
func (s *SGIO) Execute(context.Context, scsi.Command) (scsi.Response, error) {
	return scsi.Response{}, ErrNotSupported
}
