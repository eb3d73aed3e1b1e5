package lab

import (
	"os"
	"os/exec"
	"syscall"
)

// startProcess starts argv with stdout and stderr appended to logFile, in its own process
// group (so a terminal's Ctrl-C reaches only the lab, which then stops the agents in
// order) and with PDEATHSIG SIGKILL (so no agent outlives a crashed lab).
//
// WARNING: PDEATHSIG fires when the OS thread that forked the child exits, not the
// process. The Go runtime keeps its threads alive unless a goroutine exits while locked
// to its thread; the lab never locks threads, and Farm.Close kills its children anyway.
func startProcess(argv []string, logFile *os.File) (*exec.Cmd, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// signalProcess sends sig to the process only (not its group): the role executables are
// the agent's business, exactly as on a real server.
func signalProcess(pid int, sig syscall.Signal) error {
	return syscall.Kill(pid, sig)
}
