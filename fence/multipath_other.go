//go:build !linux

package fence

import "fmt"

// ResolvePaths fails with ErrNotSupported outside Linux.
func ResolvePaths(dev string) ([]string, error) {
	return nil, fmt.Errorf("fence: resolve paths of %s: %w", dev, ErrNotSupported)
}

// OpenPaths fails with ErrNotSupported outside Linux.
func OpenPaths(dev string) ([]Transport, error) {
	return nil, fmt.Errorf("fence: open paths of %s: %w", dev, ErrNotSupported)
}
