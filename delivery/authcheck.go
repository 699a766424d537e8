package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// AuthServer is an SMTP server that checks mail users' passwords: the
// appliance authenticates to it with the user's own name and password
// (a domain's `config profile authentication smtp`).
type AuthServer struct {
	Addr string // host:port
	// ImplicitTLS starts TLS at connect (SMTPS); StartTLS requires
	// STARTTLS before AUTH. Either verifies the server's certificate with
	// TLS (its ServerName and RootCAs).
	ImplicitTLS, StartTLS bool
	TLS                   *tls.Config
	// CRAMOnly authenticates with CRAM-MD5 only: the password itself never
	// crosses the connection.
	CRAMOnly bool
	HeloName string
	Timeout  time.Duration // the whole check (0: 20 seconds)
	// Lookup resolves a host name in Addr (nil: the system resolver).
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// ErrAuthRejected is the server's refusal of the user name and password
// (reply 535).
var ErrAuthRejected = errors.New("authentication rejected")

// CheckAuth authenticates user and pass to s. It returns nil when the
// server accepts them, an error wrapping ErrAuthRejected when it refuses
// them, and another error when the server cannot be reached or does not
// offer what s requires (the answer is unknown, not a refusal).
func CheckAuth(ctx context.Context, s AuthServer, user, pass string) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	c := newConn(raw, timeout)
	tlsConf := func() *tls.Config {
		if s.TLS != nil {
			return s.TLS.Clone()
		}
		host, _, _ := net.SplitHostPort(s.Addr)
		return &tls.Config{ServerName: host}
	}
	if s.ImplicitTLS {
		if err := c.handshake(ctx, tlsConf()); err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
	}
	if r, err := c.greet(); err != nil || r.Code != 220 {
		return replyErr("greeting", r, err)
	}
	helo := s.HeloName
	if helo == "" {
		helo = "localhost"
	}
	if r, err := c.hello(helo); err != nil || !r.ok() {
		return replyErr("EHLO", r, err)
	}
	if s.StartTLS && c.tls == nil {
		if !c.has("STARTTLS") {
			return errors.New("the server does not offer STARTTLS")
		}
		if r, err := c.cmd("STARTTLS"); err != nil || r.Code != 220 {
			return replyErr("STARTTLS", r, err)
		}
		if err := c.startTLS(ctx, tlsConf()); err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		if r, err := c.hello(helo); err != nil || !r.ok() {
			return replyErr("EHLO", r, err)
		}
	}
	if !c.has("AUTH") {
		return errors.New("the server does not offer AUTH")
	}
	mech := "auto"
	if s.CRAMOnly {
		mech = "cram-md5"
	}
	r, err := c.auth(user, pass, mech)
	c.cmd("QUIT")
	switch {
	case err != nil:
		return fmt.Errorf("AUTH: %w", err)
	case r.Code == 235:
		return nil
	case r.Code == 535:
		return fmt.Errorf("%w: %s", ErrAuthRejected, r)
	}
	return replyErr("AUTH", r, nil)
}

// dial connects to Addr, to each address of its host in turn when it is a
// name and Lookup is set.
func (s AuthServer) dial(ctx context.Context) (net.Conn, error) {
	var dialer net.Dialer
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err == nil || s.Lookup == nil {
		return dialer.DialContext(ctx, "tcp", s.Addr)
	}
	addrs, err := s.Lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	var errs []error
	for _, a := range addrs {
		c, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func replyErr(stage string, r reply, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", stage, err)
	}
	return fmt.Errorf("%s: %s", stage, r)
}
