package fsync

import (
	"os"
	"syscall"
)

// Data makes a file's data durable (fdatasync: the metadata that reading
// it back needs, such as its size, but not its times).
func Data(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
