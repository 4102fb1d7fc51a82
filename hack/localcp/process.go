package localcp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one running component.
type process struct {
	name    string
	pid     int
	logPath string
	cmd     *exec.Cmd     // nil when the process was started by another localcp (down)
	done    chan struct{} // closed when cmd.Wait returns; nil when cmd is nil
	waitErr error         // valid after done is closed
}

// startProcess starts binary with args, its stdout and stderr appended to
// dir/<name>.log, in its own process group. Unless detach is set the process gets
// SIGKILL when the thread that started it dies (Linux), so a crashed test leaves
// nothing behind.
func startProcess(dir, name, binary string, args, env []string, detach bool) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor

	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr(detach)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, pid: cmd.Process.Pid, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended; for a process this localcp did
// not start it looks at /proc (a zombie counts as ended).
func (p *process) exited() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	return !pidAlive(p.pid)
}

// signal sends sig to the process group of p (each component leads its own).
func (p *process) signal(sig syscall.Signal) {
	if err := syscall.Kill(-p.pid, sig); err != nil {
		_ = syscall.Kill(p.pid, sig)
	}
}

// killGroup SIGKILLs the process group p leads.
func killGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }

// stop sends SIGTERM, then SIGKILL after grace, and waits until the process is
// gone.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	p.signal(syscall.SIGTERM)
	if p.waitExit(grace) {
		return nil
	}
	p.signal(syscall.SIGKILL)
	if p.waitExit(5 * time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.name, p.pid)
}

func (p *process) waitExit(timeout time.Duration) bool {
	if p.done != nil {
		select {
		case <-p.done:
			return true
		case <-time.After(timeout):
			return false
		}
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !pidAlive(p.pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !pidAlive(p.pid)
}

// logTail returns the last lines of the process log, for error messages.
func (p *process) logTail(lines int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// pidAlive reports whether pid is a live (non-zombie) process.
func pidAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// No procfs: trust kill(0).
		return !os.IsNotExist(err) || !procfsMounted()
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

func procfsMounted() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// pidCmdlineContains reports whether the command line of pid mentions s. It
// guards `down` against signalling a recycled PID.
func pidCmdlineContains(pid int, s string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return !procfsMounted()
	}
	return bytes.Contains(data, []byte(s))
}

const pidsFile = "pids"

// writePIDs records "<name> <pid>" lines in dir/pids.
func writePIDs(dir string, procs []*process) error {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "%s %d\n", p.name, p.pid)
	}
	tmp := filepath.Join(dir, pidsFile+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, pidsFile))
}

// readPIDs reads dir/pids, in start order.
func readPIDs(dir string) ([]*process, error) {
	f, err := os.Open(filepath.Join(dir, pidsFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var procs []*process
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		pid, err := strconv.Atoi(fields[1])
		if err != nil || pid <= 1 {
			continue
		}
		procs = append(procs, &process{name: fields[0], pid: pid, logPath: filepath.Join(dir, fields[0]+".log")})
	}
	return procs, sc.Err()
}
