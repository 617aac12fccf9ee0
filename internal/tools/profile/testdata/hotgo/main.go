// A CPU-bound Go program for profile's tests: about 70 % of its time in
// hot and 30 % in warm, both called from spin, for as many seconds as its
// argument says (60 by default).
package main

import (
	"os"
	"strconv"
	"time"
)

var sink uint64

// hot and warm keep an array on their stack: a Go function without a
// frame (a leaf with no locals) saves no frame pointer, and a sample in it
// would show its caller's caller as the caller, as any frame-pointer walk
// does.
//
//go:noinline
func hot() {
	var acc [4]uint64
	for i := uint64(0); i < 7000; i++ {
		acc[i&3] += i * sink
	}
	sink += acc[0] + acc[1] + acc[2] + acc[3]
}

//go:noinline
func warm() {
	var acc [4]uint64
	for i := uint64(0); i < 3000; i++ {
		acc[i&3] += i * sink
	}
	sink += acc[0] + acc[1] + acc[2] + acc[3]
}

//go:noinline
func spin() {
	hot()
	warm()
}

func main() {
	secs := 60
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	end := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(end) {
		for range 1000 {
			spin()
		}
	}
}
