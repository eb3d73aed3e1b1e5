//go:build !linux

package lab

import (
	"context"
	"fmt"
)

// BenchKeepalived needs Linux network namespaces.
func BenchKeepalived(context.Context, KeepalivedOptions) (*KeepalivedReport, error) {
	return nil, fmt.Errorf("%w: keepalived benchmark (network namespaces)", ErrUnsupported)
}
