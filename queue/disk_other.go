//go:build !linux

package queue

import (
	"errors"
	"os"
)

func fdatasync(f *os.File) error { return f.Sync() }

func freeBytes(string) (int64, error) { return 0, errors.ErrUnsupported }
