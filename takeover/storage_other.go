//go:build !linux

package takeover

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// The storage resource needs Linux (mount(2), /proc, blkid). Elsewhere the package
// builds, specs validate, and Start and Check fail with ErrUnsupported; nothing can
// be mounted, so unmounting succeeds.

type mountOptions struct{}

func parseMountOptions(string) (mountOptions, error) { return mountOptions{}, nil }

func resolveDevice(_ context.Context, spec string) (string, error) {
	return "", fmt.Errorf("storage.device: %q: %w", spec, ErrUnsupported)
}

func probeFSType(context.Context, string) (string, error) { return "", ErrUnsupported }

func refuseMounted(string, string) error { return ErrUnsupported }

func mount(string, string, string, mountOptions) error { return ErrUnsupported }

func verifyMounted(string, string, string) error { return ErrUnsupported }

func unmountAll(context.Context, string, time.Duration, *zap.Logger) error { return nil }

func lookPathSbin(name string) (string, error) {
	return "", fmt.Errorf("%s: %w", name, ErrUnsupported)
}

func runTool(_ context.Context, argv ...string) ([]byte, int, error) {
	return nil, 0, fmt.Errorf("%s: %w", argv[0], ErrUnsupported)
}
