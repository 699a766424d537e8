// Package firmwaretest helps test the interfaces that install upgrade
// files (SSH, web UI) without the appliance image: a Fake installer that
// checks a file as firmware.Runtime does, into memory, and a builder of
// upgrade file headers.
package firmwaretest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"testing"

	"mailgate/firmware"
)

// Fake installs like firmware.Runtime, into memory: it reads the header,
// checks the architecture (when Arch is set), then the payload against
// the manifest's size and checksum, and keeps what it received.
type Fake struct {
	Arch       string // GOARCH an upgrade must match ("": any)
	StatusText string // what Status says

	mu       sync.Mutex
	header   chan struct{}
	calls    int
	manifest firmware.Manifest
	installs [][]byte
}

func (f *Fake) Status() string { return f.StatusText }

func (f *Fake) Install(ctx context.Context, r io.Reader, progress io.Writer) (firmware.Manifest, error) {
	f.mu.Lock()
	f.calls++
	header := f.header
	f.header = nil
	f.mu.Unlock()
	br := bufio.NewReader(r)
	m, err := firmware.ReadHeader(br)
	if err != nil {
		return m, err
	}
	if header != nil {
		close(header)
	}
	if f.Arch != "" {
		if err := m.CheckArch(f.Arch); err != nil {
			return m, err
		}
	}
	fmt.Fprintf(progress, "Writing version %s (%d bytes)...\n", m.Version, m.Size)
	var root bytes.Buffer
	if err := firmware.ReadPayload(br, m, &root); err != nil {
		return m, err
	}
	fmt.Fprintf(progress, "Checksum verified.\n")
	f.mu.Lock()
	f.manifest = m
	f.installs = append(f.installs, root.Bytes())
	f.mu.Unlock()
	return m, nil
}

// HeaderRead returns a channel closed once the next Install has read a
// header.
func (f *Fake) HeaderRead() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.header = make(chan struct{})
	return f.header
}

// Calls is the number of Install calls so far.
func (f *Fake) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Installs are the root file systems installed so far, in order.
func (f *Fake) Installs() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.installs...)
}

// Last is the manifest and root file system of the last install.
func (f *Fake) Last() (firmware.Manifest, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.installs) == 0 {
		return f.manifest, nil
	}
	return f.manifest, f.installs[len(f.installs)-1]
}

// Header returns the header (magic and manifest) of an upgrade file of
// version for arch (target amd64) whose root file system is root.
func Header(t testing.TB, version, arch string, root []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(root)
	var h bytes.Buffer
	m := firmware.Manifest{Version: version, Arch: arch, Target: "amd64", Size: int64(len(root)), SHA256: hex.EncodeToString(sum[:])}
	if err := firmware.WriteHeader(&h, m); err != nil {
		t.Fatal(err)
	}
	return h.Bytes()
}
