// The Go program of funccount's tests: after a line on stdin it calls
// work 1000 times and greet 20 times (neither inlined), then prints a
// checksum and exits normally. Built by the tests with go build, plain
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
	fmt.Println(sum)
}
