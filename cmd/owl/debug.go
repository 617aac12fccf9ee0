package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// debugStats serves the soak test (test/soak): with OWL_DEBUG_STATS=FILE
// in the environment, each SIGUSR1 rewrites FILE with this process's
// goroutine count, which /proc does not show. Without it, SIGUSR1 keeps
// its default action.
func debugStats() {
	path := os.Getenv("OWL_DEBUG_STATS")
	if path == "" {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		for range ch {
			os.WriteFile(path, fmt.Appendf(nil, "goroutines %d\n", runtime.NumGoroutine()), 0o600)
		}
	}()
}
