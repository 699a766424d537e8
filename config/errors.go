package config

import (
	"fmt"
	"strings"
)

// Return codes shown after "Command fail.", as FortiOS prints them.
const (
	CodeParse    = -61  // command parse error
	CodeValue    = -651 // value parse error
	CodeNotFound = -3   // entry not found
	CodeInUse    = -23  // entry is used by other entries
	CodeInvalid  = -7   // configuration is invalid as a whole
)

// Error is a refused command, rendered the way FortiOS does:
//
//	<detail>
//	value parse error before 'xyz'
type Error struct {
	Code   int
	Msg    string
	Detail string // optional explanation line printed first
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Msg
	}
	return e.Detail + "\n" + e.Msg
}

func parseErr(tok string) *Error {
	return &Error{Code: CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", tok)}
}

func valueErr(tok, detail string, args ...any) *Error {
	return &Error{Code: CodeValue, Msg: fmt.Sprintf("value parse error before '%s'", tok), Detail: fmt.Sprintf(detail, args...)}
}

func notFound(detail string, args ...any) *Error {
	return &Error{Code: CodeNotFound, Msg: "entry not found", Detail: fmt.Sprintf(detail, args...)}
}

func lineRef(n int) string { return fmt.Sprintf("at line %d", n) }

// ValidationError lists every problem of a configuration, each with its path.
type ValidationError []string

func (v ValidationError) Error() string {
	return "configuration is invalid:\n  " + strings.Join(v, "\n  ")
}
