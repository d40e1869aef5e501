// A Go program that spends its time in main.spinHot, called by main.spinCaller: loupe profile
// must name Go functions (from the binary's symbol table; Go keeps frame pointers on amd64).
package main

import (
	"os"
	"strconv"
	"time"
)

var sink uint64

// The stack array gives spinHot a frame: Go leaves frameless leaf functions without a frame
// pointer, and frame-pointer unwinding (loupe's, perf's) then skips their caller.
//
//go:noinline
func spinHot(n int) uint64 {
	var ring [16]uint64
	x := uint64(88172645463325252)
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		ring[i&15] = x
	}
	return x ^ ring[n&15]
}

//go:noinline
func spinCaller() {
	sink += spinHot(1000000)
}

func main() {
	seconds, _ := strconv.ParseFloat(os.Args[1], 64)
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	for time.Now().Before(deadline) {
		spinCaller()
	}
}
