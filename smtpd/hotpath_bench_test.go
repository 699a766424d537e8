package smtpd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/queue"
)

// Hot paths of the SMTP service: the Received header every message gets,
// the DATA copy (dot-unstuffed input checked for bare CR/LF), and a whole
// mail transaction on a live connection.

func BenchmarkReceivedHeader(b *testing.B) {
	s := &session{d: &derived{loc: time.UTC}, host: "mx.example.com", rdns: "mail.outside.example",
		ip: netip.MustParseAddr("203.0.113.9"), esmtp: true,
		tlsHeader: "(version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 bits=128)"}
	rcpts := []string{"user@example.com"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if h := s.received("6B04526E1D84097B-1", rcpts, now); !strings.HasPrefix(h, "Received: from unknown") {
			b.Fatal(h)
		}
	}
}

func benchCopy(b *testing.B, size int) {
	line := "La la la, the quick brown fox jumps over the lazy dog, 0123456789 la la la.\r\n"
	body := []byte(strings.Repeat(line, size/len(line)+1))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var r bytes.Reader
	for b.Loop() {
		r.Reset(body)
		if _, bare, err := copyMessage(io.Discard, &r, false); err != nil || bare {
			b.Fatal(err, bare)
		}
	}
}

func BenchmarkCopyMessage1KiB(b *testing.B)   { benchCopy(b, 1<<10) }
func BenchmarkCopyMessage100KiB(b *testing.B) { benchCopy(b, 100<<10) }

// nullQueue acknowledges every message at once, keeping nothing.
type nullQueue struct{}

func (nullQueue) Enqueue(_ queue.Envelope, msg io.Reader) (string, error) {
	// Read as the queue does, into a buffer of its own (io.Copy would
	// count a 32 KiB buffer of io.MultiReader's against the session).
	var buf [4096]byte
	for {
		_, err := msg.Read(buf[:])
		if err == io.EOF {
			return "Q1", nil
		}
		if err != nil {
			return "", err
		}
	}
}

// BenchmarkTransaction1KiB: MAIL, RCPT (receive policy), DATA of a 1 KiB
// message, Received header, handed to a queue that stores nothing; one
// client session on loopback, commands not pipelined.
func BenchmarkTransaction1KiB(b *testing.B) { benchTransaction(b, false) }

// BenchmarkTransactionTLS1KiB: the same after STARTTLS.
func BenchmarkTransactionTLS1KiB(b *testing.B) { benchTransaction(b, true) }

func benchTransaction(b *testing.B, useTLS bool) {
	e := newEnv(b, testConfig(b, ""), func(_ *env, o *Options) {
		o.Queue = nullQueue{}
		o.Event = func(string, string) {}
		o.History = func(History) {}
	})
	c, err := net.Dial("tcp", e.addr[SMTP])
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var (
		r *bufio.Reader
		w *bufio.Writer
	)
	attach := func(c net.Conn) {
		r = bufio.NewReader(c)
		w = bufio.NewWriter(c)
	}
	attach(c)
	expect := func(code string) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if !strings.HasPrefix(line, code) {
				b.Fatalf("want %s, got %q", code, line)
			}
			if len(line) < 4 || line[3] != '-' {
				return
			}
		}
	}
	cmd := func(line, code string) {
		w.WriteString(line + "\r\n")
		w.Flush()
		expect(code)
	}
	expect("220")
	cmd("EHLO client.example", "250")
	if useTLS {
		cmd("STARTTLS", "220")
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		attach(tc)
		cmd("EHLO client.example", "250")
	}
	body := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 16) + ".\r\n"
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		cmd("MAIL FROM:<a@outside.example>", "250")
		cmd("RCPT TO:<user@example.com>", "250")
		cmd("DATA", "354")
		w.WriteString(body)
		w.Flush()
		expect("250")
	}
	cmd("QUIT", "221")
}
