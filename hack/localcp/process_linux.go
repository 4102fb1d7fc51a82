package localcp

import "syscall"

// sysProcAttr puts the child in its own process group (so a terminal's Ctrl-C
// does not reach it and Stop can signal the whole group) and, unless detach is
// set, has the kernel SIGKILL it when the parent goes away.
func sysProcAttr(detach bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if !detach {
		attr.Pdeathsig = syscall.SIGKILL
	}
	return attr
}
