//go:build unix

package localcp

import (
	"errors"
	"os"
	"syscall"
)

// lockHeld reports whether another process holds the flock that build.sh
// takes on path while it builds. It takes the lock without blocking and
// releases it at once, so it never delays that build.
func lockHeld(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}
