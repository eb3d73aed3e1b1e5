package lab

import (
	"syscall"
)

// signalProcess sends sig to the process only (not its group): the role executables are
// the agent's business, exactly as on a real server.
func signalProcess(pid int, sig syscall.Signal) error {
	return syscall.Kill(pid, sig)
}
