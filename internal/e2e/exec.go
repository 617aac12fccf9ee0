package e2e

import (
	"errors"
	"os"
	goruntime "runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecOnThread replaces this process's image with the re-executed test
// binary performing action (as Child does), from the thread that leads
// the process when leader is true, else from another thread: the two
// execs the kernel treats apart (the second ends the leading thread).
// It returns only on failure.
func ExecOnThread(leader bool, action string, args ...string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// syscall.Exec keeps the first of duplicate variables: replace it.
	env := []string{childEnv + "=" + action}
	for _, kv := range os.Environ() {
		if len(kv) < len(childEnv)+1 || kv[:len(childEnv)+1] != childEnv+"=" {
			env = append(env, kv)
		}
	}
	argv := append([]string{exe}, args...)
	wrong := errors.New("wrong thread")
	// Each try locks a goroutine to a thread; a thread of the wrong kind
	// stays held, so that the next try gets another.
	for range 200 {
		res := make(chan error, 1)
		go func() {
			goruntime.LockOSThread()
			if (unix.Gettid() == os.Getpid()) != leader {
				res <- wrong
				select {}
			}
			res <- syscall.Exec(exe, argv, env)
		}()
		if err := <-res; err != wrong {
			return err
		}
	}
	return errors.New("no thread of the kind asked for in 200 tries")
}
