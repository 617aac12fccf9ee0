// The Go program of funccount's tests: after a line on stdin it calls
// work 1000 times, greet 20 times and deep 64 times (none inlined), then
// prints a checksum and exits normally. deep's 4 KiB frames grow the
// goroutine's stack as it recurses: its calls go through runtime.morestack,
// which re-runs the function's start (each must still count once). Built by the tests with go build, plain
// and with -ldflags=-s.
package main

import (
	"bufio"
	"fmt"
	"os"
)

//go:noinline
func work(i int) int { return i*2 + 1 }

//go:noinline
func greet(name string) (int, error) {
	if name == "" {
		return 0, fmt.Errorf("no name")
	}
	return len(name), nil
}

//go:noinline
func deep(n int) int {
	var buf [4096]byte
	buf[n] = 1
	if n == 0 {
		return use(buf[:])
	}
	return deep(n-1) + use(buf[:])
}

//go:noinline
func use(b []byte) int { return int(b[0]) }

func main() {
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(1)
	}
	sum := 0
	for i := range 1000 {
		sum += work(i)
	}
	for i := range 20 {
		n, _ := greet(fmt.Sprint("owl", i%2))
		sum += n
	}
	sum += deep(63)
	fmt.Println(sum)
}
