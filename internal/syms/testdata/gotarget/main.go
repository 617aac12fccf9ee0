// Command gotarget is a process for the Go symbolization tests: it prints
// the address of one of its functions, then blocks reading stdin.
package main

import (
	"fmt"
	"os"
	"reflect"
)

//go:noinline
func owlTestTarget(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * i
	}
	return s
}

func main() {
	fmt.Printf("main.owlTestTarget %#x\nready\n", reflect.ValueOf(owlTestTarget).Pointer())
	owlTestTarget(3)
	os.Stdin.Read(make([]byte, 1))
}
