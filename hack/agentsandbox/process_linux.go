package agentsandbox

import "syscall"

// sysProcAttr puts the controller in its own process group (a terminal's
// Ctrl-C does not reach it) and has the kernel SIGKILL it when the parent goes
// away, so a crashed test leaves nothing behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
