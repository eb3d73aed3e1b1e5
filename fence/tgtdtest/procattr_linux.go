package tgtdtest

import "syscall"

// sysProcAttr kills tgtd when the test binary dies without running cleanup.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
