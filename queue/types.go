package queue

import (
	"context"
	"io"
	"net/netip"
	"time"
)

// Envelope is what the SMTP server knows about an accepted message.
type Envelope struct {
	From       string   // envelope sender; "" is the null sender (bounces)
	Recipients []string // accepted recipients, in RCPT order
	// Classifiers says why each recipient was accepted (the receive
	// policy's classifier), parallel to Recipients; may be shorter.
	Classifiers []string
	SessionID   string
	ClientIP    netip.Addr
	Helo        string
	AuthUser    string // "" when not authenticated
	TLS         string // "TLSv1.3 TLS_AES_128_GCM_SHA256", "" for plain text
	Received    time.Time
	// Server is the address the client connected to: in transparent mode,
	// for a picked-up session, another server's.
	Server netip.AddrPort
}

// Job is one delivery attempt: recipients of one message that share a
// destination domain.
type Job struct {
	MsgID  string
	From   string
	Domain string // lower-case recipient domain
	Rcpts  []string
	Size   int64
	// Open returns the message (headers and body, CRLF line ends).
	Open func() (io.ReadCloser, error)
	// Attempt counts from 1 for the first attempt of these recipients.
	Attempt int
	// PreferPlain asks for this attempt in plain text: the previous one
	// failed in the TLS handshake and the STARTTLS fallback mode is
	// next-retry or next-retry-any.
	PreferPlain bool
	// The client that sent the message, its HELO name, and the address
	// it connected to (Envelope).
	ClientIP netip.Addr
	Helo     string
	Server   netip.AddrPort
}

// Status is the outcome of a delivery attempt for one recipient.
type Status int

// Outcomes.
const (
	TempFail  Status = iota // try again later
	Delivered               // the next hop accepted it
	PermFail                // bounce now
)

// Result is the outcome for one recipient of a Job.
type Result struct {
	Rcpt     string
	Status   Status
	Code     int    // SMTP reply code (remote or synthesised), 0 if none
	Enhanced string // e.g. "4.7.0"
	Text     string // reply text or local reason
	Host     string // next hop that was tried, "" if none was reached
	TLS      string // negotiated "TLSv1.3 TLS_AES_..." or "" for plain text
	// TLSHandshakeFailed reports that this attempt failed in the TLS phase
	// in a way that the next-retry fallback modes react to.
	TLSHandshakeFailed bool
	// Classifier, when set, says that the appliance's own outbound policy
	// caused the failure ("TLS Enforcement": a delivery rule's TLS profile
	// was not met); the history records it in place of the classifier the
	// recipient got when the message was received.
	Classifier string
}

// Deliverer performs delivery attempts (the delivery package).
type Deliverer interface {
	Deliver(ctx context.Context, job *Job) []Result
}

// Message is a queued message as the admin sees it (CLI, web UI).
type Message struct {
	ID         string
	From       string
	Size       int64
	Received   time.Time
	Env        Envelope
	Dead       bool // a bounce that could not be delivered: kept, not retried
	Recipients []Recipient
}

// Recipient is the delivery state of one recipient of a queued message.
type Recipient struct {
	Addr         string
	State        string // "queued", "deferred", "delivered", "bounced"
	Attempts     int
	FirstAttempt time.Time
	LastAttempt  time.Time
	NextAttempt  time.Time
	LastError    string
	PreferPlain  bool // next attempt in plain text (STARTTLS next-retry fallback)
	Warned       bool // delay notification sent
}

// Classifier returns why rcpt was accepted ("" when unknown).
func (e *Envelope) Classifier(rcpt string) string {
	for i, r := range e.Recipients {
		if r == rcpt && i < len(e.Classifiers) {
			return e.Classifiers[i]
		}
	}
	return ""
}
