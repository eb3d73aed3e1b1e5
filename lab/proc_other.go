//go:build !linux

package lab

import (
	"fmt"
	"syscall"
)

func signalProcess(pid int, _ syscall.Signal) error {
	return fmt.Errorf("%w: signal pid %d", ErrUnsupported, pid)
}
