// Package fsync owns the two durability primitives the packages that keep
// mail on disk share: making a file's data durable (Data) and making a
// directory's entries durable (Dir), so that a file created, linked or
// renamed in it survives a crash.
package fsync

import (
	"os"
	"syscall"
)

// Dir makes the entries of a directory durable. File systems that cannot
// sync a directory (EINVAL) are taken as having nothing to do.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && err != syscall.EINVAL {
		return err
	}
	return nil
}
