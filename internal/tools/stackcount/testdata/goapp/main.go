// stackcount's Go test program: for each line on stdin, main calls loop,
// which calls work N times (N is the argument; none of them inlined); then
// it prints "done" and the running sum. It exits at the end of its input.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
)

//go:noinline
func work(i int) int { return i*2 + 1 }

//go:noinline
func loop(n int) int {
	sum := 0
	for i := range n {
		sum += work(i)
	}
	return sum
}

func main() {
	n := 1000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	in := bufio.NewScanner(os.Stdin)
	sum := 0
	for in.Scan() {
		sum += loop(n)
		fmt.Printf("done %d\n", sum)
	}
}
