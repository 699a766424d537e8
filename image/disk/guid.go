package disk

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// A GUID is held as [16]byte in its on-disk (GPT, "mixed-endian") encoding:
// the first three groups of the text form little-endian, the last two as
// written. ParseGUID and FormatGUID convert from and to the text form.

// Well-known GPT partition type GUIDs.
var (
	TypeEFISystem      = MustParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	TypeLinuxRootAMD64 = MustParseGUID("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709") // root (x86-64)
	TypeLinuxRootARM64 = MustParseGUID("B921B045-1DF0-41C3-AF44-4C6F280D3FAE") // root (arm64)
	TypeLinuxData      = MustParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4") // Linux filesystem data
)

// swapGUID converts between the text byte order and the on-disk encoding (the
// conversion is its own inverse).
func swapGUID(g [16]byte) [16]byte {
	g[0], g[1], g[2], g[3] = g[3], g[2], g[1], g[0]
	g[4], g[5] = g[5], g[4]
	g[6], g[7] = g[7], g[6]
	return g
}

// ParseGUID parses the canonical text form
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits in either case) into the
// on-disk encoding.
func ParseGUID(s string) ([16]byte, error) {
	var g [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("GUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil {
		return g, fmt.Errorf("GUID %q: %v", s, err)
	}
	copy(g[:], b)
	return swapGUID(g), nil
}

// MustParseGUID is ParseGUID for constants; it panics on a malformed GUID.
func MustParseGUID(s string) [16]byte {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// FormatGUID returns the canonical text form of an on-disk GUID, in lower
// case as the kernel, blkid and /dev/disk/by-partuuid show it (the kernel's
// root=PARTUUID= match is case-insensitive).
func FormatGUID(g [16]byte) string {
	t := swapGUID(g)
	h := hex.EncodeToString(t[:])
	return strings.Join([]string{h[0:8], h[8:12], h[12:16], h[16:20], h[20:32]}, "-")
}

// DeriveGUID returns a GUID derived from seed alone (the first 16 bytes of its
// SHA-256, with the RFC 4122 version 4 and variant bits set), so that images
// built from the same inputs carry the same disk and partition GUIDs. Use
// seeds that differ per image and per partition, e.g. "<hostname>/disk" and
// "<hostname>/p1".
func DeriveGUID(seed string) [16]byte {
	sum := sha256.Sum256([]byte(seed))
	var t [16]byte
	copy(t[:], sum[:16])
	t[6] = t[6]&0x0f | 0x40 // version 4
	t[8] = t[8]&0x3f | 0x80 // RFC 4122 variant
	return swapGUID(t)
}
