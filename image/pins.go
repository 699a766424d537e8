//go:build tools

package image

// The image's inputs beyond this module, pinned in go.mod and go.sum like
// any dependency: gokrazy's programs, the kernels and the Raspberry Pi
// firmware. The builder compiles the programs from the module cache and
// copies the kernel and firmware files from it.
import (
	_ "github.com/gokrazy/firmware"
	_ "github.com/gokrazy/gokrazy/cmd/dhcp"
	_ "github.com/gokrazy/gokrazy/cmd/ntp"
	_ "github.com/gokrazy/gokrazy/cmd/randomd"
	_ "github.com/gokrazy/kernel.amd64"
	_ "github.com/gokrazy/kernel.rpi"
)
