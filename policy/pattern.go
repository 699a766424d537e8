package policy

import (
	"regexp"
	"strings"
	"sync"
)

// MatchWildcard reports whether s matches pattern, where '*' matches any
// run of characters and '?' exactly one, case-insensitively.
func MatchWildcard(pattern, s string) bool {
	p, v := []rune(strings.ToLower(pattern)), []rune(strings.ToLower(s))
	// Iterative matching with backtracking to the last '*'.
	pi, vi, star, mark := 0, 0, -1, 0
	for vi < len(v) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == v[vi]):
			pi++
			vi++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, vi
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			vi = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

var regexps sync.Map // pattern -> *regexp.Regexp or error

// compileRegexp compiles a case-insensitive pattern once.
func compileRegexp(pattern string) (*regexp.Regexp, error) {
	if v, ok := regexps.Load(pattern); ok {
		if re, ok := v.(*regexp.Regexp); ok {
			return re, nil
		}
		return nil, v.(error)
	}
	re, err := regexp.Compile("(?i)" + pattern)
	if err != nil {
		regexps.Store(pattern, err)
		return nil, err
	}
	regexps.Store(pattern, re)
	return re, nil
}

// MatchPattern matches s against a rule pattern of type "default"
// (wildcards) or "regexp". An invalid regular expression matches nothing.
func MatchPattern(pattern, typ, s string) bool {
	if typ == "regexp" {
		re, err := compileRegexp(pattern)
		return err == nil && re.MatchString(s)
	}
	return MatchWildcard(pattern, s)
}

// ValidRegexp reports a pattern that does not compile.
func ValidRegexp(pattern string) error {
	_, err := compileRegexp(pattern)
	return err
}
