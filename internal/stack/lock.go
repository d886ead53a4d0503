package stack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFileName is the file in the data directory whose flock marks the
// directory as in use by one stack.
const lockFileName = "lock"

// DirLockedError means another process — or another Stack in this one —
// holds the data directory.
type DirLockedError struct {
	Dir string
	PID int // the holder's process id as it wrote it; 0 when unknown
}

func (e *DirLockedError) Error() string {
	who := "another esignflow process"
	if e.PID > 0 {
		who = fmt.Sprintf("another esignflow process (pid %d)", e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by %s: stop it, or choose another --data-dir", e.Dir, who)
}

// lockDir takes an exclusive, non-blocking flock on dir/lock and writes
// the process id into it. The lock lasts until unlock is called or the
// process ends, however it ends: the kernel releases it, so a kill -9 never
// leaves a stale lock behind.
func lockDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: lock: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		raw, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
			return nil, &DirLockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("data dir %s: lock: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
