// The Go program of funclatency's tests. It runs its functions from
// several goroutines at once, each yielding and sleeping, so that
// goroutines move between threads and share them mid-call: entry and
// return can only be paired by goroutine. deep recurses with large frames,
// which makes the runtime copy the goroutine's stack (and re-enter the
// function after morestack).
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

//go:noinline
func sleepMs(ms int) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
}

//go:noinline
func work(i int) int {
	if i%7 == 0 {
		runtime.Gosched()
	}
	return i*2 + 1
}

//go:noinline
func deep(n int) int {
	var pad [512]byte
	pad[n%512] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%512]&1)
}

func main() {
	const goroutines = 4
	var wg sync.WaitGroup
	sums := make([]int, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				sleepMs(5)
				sums[g] += deep(100)
				for j := range 250 {
					sums[g] += work(i*250 + j)
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, s := range sums {
		total += s
	}
	fmt.Println(total)
	os.Exit(0)
}
