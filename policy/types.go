package policy

import (
	"crypto/x509"
	"net/netip"
)

// TLSInfo describes the TLS state of an SMTP session (inbound or outbound).
type TLSInfo struct {
	Version     uint16 // tls.VersionTLS12, ...
	CipherSuite uint16
	Bits        int                 // symmetric key bits of the cipher (128, 256)
	PeerCerts   []*x509.Certificate // client (inbound) or server (outbound) chain
	Verified    bool                // chain verified against the CA store
}

// Session is what the receive policy knows about the client.
type Session struct {
	ClientIP      netip.Addr
	ReverseDNS    string // "" when unknown
	Authenticated bool
	TLS           *TLSInfo // nil in plain text
}
