package pop3d_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"mailgate/pop3d"
)

// FuzzSession feeds arbitrary client input to a session (plain text,
// with passwords allowed so that every state is reachable): the server
// never panics, answers every line, and ends the session when the input
// ends.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"CAPA\r\nUSER alice@example.com\r\nPASS Alice-Pop-1\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 1 0\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
		"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAEFsaWNlLVBvcC0x\r\nRETR 2\r\nTOP 2 99999999999999999999\r\nLIST -1\r\nDELE 3\r\nQUIT\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n=\r\nUSER\r\nPASS\r\nSTLS\r\nAPOP a b\r\n",
		"\r\n\n\x00\xff" + strings.Repeat("A", 700) + "\n",
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	b := &backend{dir: dir}
	writeMessages(f, dir)
	srv := pop3d.New(pop3d.Options{Backend: b, PlainAuth: true, Hostname: "fuzz", IdleTimeout: 5 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(ln, false)
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, input string) {
		if strings.Contains(strings.ToUpper(input), "DELE") {
			input = strings.ReplaceAll(strings.ToUpper(input), "QUIT", "NOOP") // keep the mailbox
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			io.WriteString(c, input)
			c.(*net.TCPConn).CloseWrite()
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("session did not end with the input: %v", err)
		}
		if !strings.HasPrefix(string(out), "+OK fuzz POP3 server ready\r\n") {
			t.Fatalf("no greeting: %q", out)
		}
	})
}
