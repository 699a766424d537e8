package disk

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// validLongName reports why name cannot be a FAT long file name, if it cannot.
func validLongName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty path component")
	case name == "." || name == "..":
		return fmt.Errorf("path component %q", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8", name)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return fmt.Errorf("name %q ends in a dot or space", name)
	case len(utf16.Encode([]rune(name))) > 255:
		return fmt.Errorf("name %q is longer than 255 UTF-16 code units", name)
	}
	for _, r := range name {
		if r < 0x20 || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("name %q contains %q, which FAT does not allow", name, r)
		}
	}
	return nil
}

// shortChar maps an upper-cased ASCII character to one allowed in a short
// name; other characters become '_' (the "lossy" conversion).
func shortChar(c rune) byte {
	switch {
	case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return byte(c)
	case c < 0x80 && strings.ContainsRune("!#$%&'()-@^_`{}~", c):
		return byte(c)
	}
	return '_'
}

// shortBasis computes the basis of the 8.3 short name for a long name like
// Windows does (the FAT specification's algorithm): upper-case, drop spaces
// and leading dots, take up to 8 characters before the last dot (dropping
// embedded dots) and up to 3 after it, replacing characters not allowed in
// short names by '_'. fits reports whether the short name represents the long
// name exactly up to case, in which case no numeric tail is needed.
func shortBasis(name string) (base, ext string, fits bool) {
	var m []byte
	for _, r := range name {
		if r == ' ' {
			continue
		}
		if r == '.' {
			m = append(m, '.')
			continue
		}
		if r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		m = append(m, shortChar(r))
	}
	s := strings.TrimLeft(string(m), ".")
	basePart, extPart := s, ""
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		basePart = strings.ReplaceAll(s[:i], ".", "")
		extPart = s[i+1:]
	}
	base = basePart[:min(len(basePart), 8)]
	ext = extPart[:min(len(extPart), 3)]
	if base == "" {
		base = "_"
	}
	rendered := base
	if ext != "" {
		rendered += "." + ext
	}
	return base, ext, rendered == strings.ToUpper(name) && isASCII(name)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// packShort returns the 11-byte directory entry form of base and ext.
func packShort(base, ext string) [11]byte {
	var b [11]byte
	copy(b[:], "           ")
	copy(b[0:8], base)
	copy(b[8:11], ext)
	return b
}

// withTail returns the short name with the numeric tail ~n, shortening base to
// keep it within 8 characters.
func withTail(base, ext string, n int) [11]byte {
	tail := "~" + strconv.Itoa(n)
	if len(base)+len(tail) > 8 {
		base = base[:8-len(tail)]
	}
	return packShort(base+tail, ext)
}

// shortChecksum is the checksum over a short name that every long file name
// entry belonging to it carries.
func shortChecksum(short []byte) byte {
	var sum byte
	for _, c := range short[:11] {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// shortString returns the "NAME.EXT" form of an 11-byte short name.
func shortString(b []byte) string {
	base := strings.TrimRight(string(b[0:8]), " ")
	if base != "" && base[0] == 0x05 {
		base = "\xe5" + base[1:]
	}
	ext := strings.TrimRight(string(b[8:11]), " ")
	if ext == "" {
		return base
	}
	return base + "." + ext
}
