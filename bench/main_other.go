//go:build !linux

// Command bench needs Linux (/proc, Postfix); see main.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: Linux only (it reads /proc and runs Postfix)")
	os.Exit(2)
}
