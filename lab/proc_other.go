//go:build !linux

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func startProcess(argv []string, _ *os.File) (*exec.Cmd, error) {
	return nil, fmt.Errorf("%w: start %s", ErrUnsupported, argv[0])
}

func signalProcess(pid int, _ syscall.Signal) error {
	return fmt.Errorf("%w: signal pid %d", ErrUnsupported, pid)
}
