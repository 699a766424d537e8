// Package firmware is the appliance image's side of an upgrade: the
// upgrade file format (written by the image builder, read here) and the
// A/B install through gokrazy's runtime, which writes the new root file
// system to the inactive partition and test-boots it (image/init confirms
// the new root once the appliance is ready, or falls back).
package firmware

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

// Magic starts an upgrade file: the magic line, one line of JSON
// Manifest, then Manifest.Size bytes of squashfs root file system.
const Magic = "MAILGATE-UPGRADE 1\n"

// Manifest describes the root file system in an upgrade file.
type Manifest struct {
	Version string `json:"version"`
	Arch    string `json:"arch"`   // GOARCH of the programs
	Target  string `json:"target"` // image family: amd64, rpi
	Size    int64  `json:"size"`   // bytes of squashfs that follow
	SHA256  string `json:"sha256"` // of those bytes, lower-case hex
}

// FileError is an upgrade file that cannot be installed: its format,
// manifest, architecture, size or checksum. Nothing was switched.
type FileError struct{ Msg string }

func (e *FileError) Error() string { return e.Msg }

func badFile(format string, args ...any) error {
	return &FileError{Msg: fmt.Sprintf(format, args...)}
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// MaxRootSize bounds Manifest.Size (the image's root partitions).
const MaxRootSize = 256 << 20

// MaxHeaderSize bounds the magic and manifest lines of an upgrade file
// (Install reads them through a buffer of this size), and MaxFileSize so
// the whole file.
const (
	MaxHeaderSize = 64 << 10
	MaxFileSize   = MaxRootSize + MaxHeaderSize
)

// WriteHeader writes the magic line and the manifest.
func WriteHeader(w io.Writer, m Manifest) error {
	j, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, Magic+string(j)+"\n")
	return err
}

// ReadHeader reads and checks the magic line and the manifest; r is left
// at the first byte of the root file system.
func ReadHeader(r *bufio.Reader) (Manifest, error) {
	var m Manifest
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != Magic {
		return m, badFile("not a mailgate upgrade file (it must start with %q)", strings.TrimSpace(Magic))
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return m, badFile("upgrade file: manifest: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, badFile("upgrade file: manifest: %v", err)
	}
	switch {
	case m.Version == "":
		return m, badFile("upgrade file: manifest has no version")
	case m.Size <= 0 || m.Size > MaxRootSize:
		return m, badFile("upgrade file: root size %d is out of range (1..%d)", m.Size, MaxRootSize)
	case !sha256Hex.MatchString(m.SHA256):
		return m, badFile("upgrade file: manifest checksum %q is not a SHA-256", m.SHA256)
	}
	return m, nil
}

// CheckArch refuses an upgrade built for another architecture.
func (m Manifest) CheckArch(arch string) error {
	if m.Arch != arch {
		return badFile("upgrade file is for %s (%s), this appliance is %s", m.Target, m.Arch, arch)
	}
	return nil
}

// ReadPayload copies the root file system that follows the header (m.Size
// bytes of r) to w and checks it against the manifest's SHA-256: a short
// or altered file is a *FileError, found when the last byte was copied.
func ReadPayload(r io.Reader, m Manifest, w io.Writer) error {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, m.Size))
	if err != nil {
		return err
	}
	if n < m.Size {
		return badFile("upgrade file is truncated: %d of %d bytes of root file system", n, m.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != m.SHA256 {
		return badFile("checksum mismatch: received %s, manifest says %s; nothing was switched", sum, m.SHA256)
	}
	return nil
}

// InitSettingsFile holds the image builder's settings for the image's
// init (image/init), when they differ from the defaults.
const InitSettingsFile = "/etc/mailgate/init.json"

// InitSettings are what image.Options can change in the image's init.
type InitSettings struct {
	// ApplianceArgs are extra flags of the appliance process.
	ApplianceArgs []string `json:"appliance_args,omitempty"`
	// TryBootDeadline bounds the wait for an upgraded appliance to come
	// up before the previous version returns (0: the default).
	TryBootDeadline time.Duration `json:"tryboot_deadline,omitempty"`
}

// ReadInitSettings reads InitSettingsFile (absent: the defaults).
func ReadInitSettings() (InitSettings, error) {
	var s InitSettings
	b, err := os.ReadFile(InitSettingsFile)
	if os.IsNotExist(err) {
		return s, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		return InitSettings{}, fmt.Errorf("%s: %v", InitSettingsFile, err)
	}
	return s, nil
}
