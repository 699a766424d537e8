// Package policy holds mailgate's policy decisions as pure functions of the
// configuration and what is known about a session: which receive rule
// applies to a recipient and what it decides, whether a TLS session meets
// a TLS profile, which delivery rule and STARTTLS treatment a destination
// gets. Nothing here does I/O, so every decision is tested directly.
package policy
