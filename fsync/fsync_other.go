//go:build !linux

package fsync

import "os"

// Data makes a file's data durable (fsync where fdatasync is not had).
func Data(f *os.File) error { return f.Sync() }
