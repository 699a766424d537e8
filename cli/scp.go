package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gliderlabs/ssh"

	"mailgate/admin"
	"mailgate/firmware"
)

// Upgrading an appliance by copying the upgrade file to it:
//
//	scp -O mailgate-amd64.upgrade admin@appliance:image
//
// The SSH server speaks the sink side of the classic scp protocol (the
// client runs "scp -t image" as the session's command); -O makes OpenSSH's
// scp (9.0 and later) use it instead of SFTP, which is not offered. The
// file is streamed straight into admin.Firmware.Install; its progress and
// result go to the session's standard error, which scp shows. Once the
// session has closed after a successful install, the appliance reboots to
// try the new version, as after `execute restore image`.

// Upgrader is implemented by Accounts that can also install firmware
// (ServiceAccounts does). With Accounts that do not, uploads are refused
// as on an appliance that does not run from the image.
type Upgrader interface {
	// Firmware is the upgrade path; nil when the appliance does not run
	// from the mailgate image.
	Firmware() admin.Firmware
	// Reboot restarts the appliance.
	Reboot()
}

func (a serviceAccounts) Firmware() admin.Firmware { return a.svc.Firmware }
func (a serviceAccounts) Reboot()                  { a.svc.Reboot() }

const (
	scpTarget      = "image"
	scpWrongTarget = "only 'image' can be uploaded: an upgrade file for the firmware"
	scpReadOnly    = "permission denied: a read-only administrator cannot upgrade the firmware"
	scpMustChange  = "password change required: log in interactively (ssh -t) to set the admin password before uploading"
	scpDownload    = "files cannot be copied from the appliance; only an upgrade file can be uploaded to 'image'"
	scpOneFile     = "only one file can be uploaded: an upgrade file to 'image'"
	scpSFTPMsg     = "SFTP is not supported: copy the upgrade file with the classic scp protocol, e.g. scp -O mailgate-amd64.upgrade admin@appliance:image\n"
	scpMaxLine     = 4096
)

// scpArgs parses the command an scp client runs on the remote side. It
// reports ok for any command whose name is scp; err then says why it is
// not an upload to "image".
func scpArgs(cmd []string) (ok bool, err error) {
	if len(cmd) == 0 || cmd[0] != "scp" {
		return false, nil
	}
	sink := false
	args := cmd[1:]
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		a := args[0]
		args = args[1:]
		if a == "--" {
			break
		}
		for _, f := range a[1:] {
			switch f {
			case 't':
				sink = true
			case 'f':
				return true, errors.New(scpDownload)
			case 'd', 'r':
				return true, errors.New(scpOneFile)
			case 'p', 'v', 'q':
			default:
				return true, fmt.Errorf("scp: unsupported option -%c", f)
			}
		}
	}
	switch {
	case !sink:
		return true, errors.New(scpDownload)
	case len(args) != 1:
		return true, errors.New(scpOneFile)
	case args[0] != scpTarget:
		return true, errors.New(scpWrongTarget)
	}
	return true, nil
}

// serveSCP serves the session if its command is scp and reports whether it
// did; it exits the session itself. The caller has authenticated user and
// looked up info.
func (s *Server) serveSCP(sess ssh.Session, user, remote string, info AdminInfo) bool {
	ok, err := scpArgs(sess.Command())
	if !ok {
		return false
	}
	var fw admin.Firmware
	up, _ := s.cfg.Accounts.(Upgrader)
	if up != nil {
		fw = up.Firmware()
	}
	switch {
	case err != nil:
	case info.MustChangePassword:
		err = errors.New(scpMustChange)
	case info.ReadOnly:
		err = errors.New(scpReadOnly)
	case fw == nil:
		err = admin.ErrNoFirmware
	}
	if err != nil {
		s.cfg.event("warning", "admin", user, remote, "scp upload refused: "+err.Error())
		scpError(sess, err)
		sess.Exit(1)
		return true
	}
	installed, err := s.scpSink(sess, fw, user, remote)
	code := 0
	if err != nil {
		code = 1
	}
	sess.Exit(code)
	if installed {
		// The session is closed: scp has had its answer.
		go up.Reboot()
	}
	return true
}

// scpSink runs the sink side of the protocol for one file. It reports
// whether an upgrade was installed, and the error the client was told of.
func (s *Server) scpSink(sess ssh.Session, fw admin.Firmware, user, remote string) (installed bool, err error) {
	r := bufio.NewReaderSize(sess, 64<<10)
	stderr := sess.Stderr()
	if err := scpAck(sess); err != nil {
		return false, err
	}
	received := false
	for {
		line, err := scpReadLine(r)
		if err == io.EOF {
			return installed, nil
		}
		if err != nil {
			return installed, err
		}
		switch line[0] {
		case 'T': // times of the file (scp -p): not kept
			if err := scpAck(sess); err != nil {
				return installed, err
			}
			continue
		case 'C':
		case 'D':
			return installed, scpError(sess, errors.New(scpOneFile))
		case '\x01', '\x02':
			// The client gave up; it has printed the reason.
			return installed, errors.New(line[1:])
		default:
			return installed, scpError(sess, fmt.Errorf("scp: protocol error: unexpected %q", line))
		}
		if received {
			return installed, scpError(sess, errors.New(scpOneFile))
		}
		received = true
		size, err := scpFileSize(line)
		if err != nil {
			return false, scpError(sess, err)
		}
		if err := scpAck(sess); err != nil {
			return false, err
		}
		data := &io.LimitedReader{R: r, N: size}
		ctx, cancel := context.WithCancel(sess.Context())
		m, ierr := fw.Install(ctx, data, stderr)
		cancel()
		// Whatever Install left (after an error, or trailing bytes) is
		// still on its way: take it, and the client's status byte that
		// ends the data (0, or an error line when it could not read its
		// file), before answering.
		rest, err := io.Copy(io.Discard, data)
		var st byte
		if err == nil && data.N > 0 {
			err = io.ErrUnexpectedEOF
		}
		if err == nil {
			st, err = r.ReadByte()
		}
		if err != nil {
			if ierr == nil {
				ierr = fmt.Errorf("upload interrupted: %w", err)
			}
			s.cfg.event("error", "system", user, remote, "firmware upgrade from an scp upload failed: "+ierr.Error())
			return false, ierr
		}
		if st != 0 && ierr == nil {
			msg, _ := scpReadLine(r)
			ierr = fmt.Errorf("the client could not read the file: %s", msg)
		}
		if ierr != nil {
			s.cfg.event("error", "system", user, remote, "firmware upgrade from an scp upload failed: "+ierr.Error())
			return false, scpError(sess, ierr)
		}
		if rest > 0 {
			fmt.Fprintf(stderr, "Ignored %d bytes after the root file system.\n", rest)
		}
		s.cfg.event("notice", "system", user, remote, "firmware "+m.Version+" installed from an scp upload; rebooting to try it")
		fmt.Fprintf(stderr, "Firmware %s installed. The system is rebooting.\n", m.Version)
		installed = true
		if err := scpAck(sess); err != nil {
			return true, err
		}
	}
}

// scpFileSize checks a "C<mode> <size> <name>" line and returns the size.
func scpFileSize(line string) (int64, error) {
	f := strings.SplitN(line[1:], " ", 3)
	if len(f) != 3 || len(f[0]) != 4 || f[2] == "" {
		return 0, fmt.Errorf("scp: protocol error: bad file line %q", line)
	}
	if _, err := strconv.ParseUint(f[0], 8, 32); err != nil {
		return 0, fmt.Errorf("scp: protocol error: bad file mode %q", f[0])
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || size < 0 {
		return 0, fmt.Errorf("scp: protocol error: bad file size %q", f[1])
	}
	if size == 0 || size > firmware.MaxFileSize {
		return 0, fmt.Errorf("%s: %d bytes is not the size of an upgrade file (at most %d MiB)", f[2], size, firmware.MaxFileSize>>20)
	}
	return size, nil
}

// scpReadLine reads one protocol line without its newline; io.EOF only
// when the input ends before the line starts.
func scpReadLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if c == '\n' {
			if len(b) == 0 {
				return "", errors.New("scp: protocol error: empty line")
			}
			return string(b), nil
		}
		if len(b) >= scpMaxLine {
			return "", errors.New("scp: protocol error: line too long")
		}
		b = append(b, c)
	}
}

func scpAck(w io.Writer) error {
	_, err := w.Write([]byte{0})
	return err
}

// scpError tells the client of err: scp prints the line and exits with a
// non-zero status. It returns err.
func scpError(w io.Writer, err error) error {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	io.WriteString(w, "\x01"+msg+"\n")
	return err
}

// handleSFTP answers the SFTP subsystem that OpenSSH's scp uses by
// default with the way to upload instead.
func (s *Server) handleSFTP(sess ssh.Session) {
	io.WriteString(sess.Stderr(), scpSFTPMsg)
	sess.Exit(1)
}

// event logs through the configured sink with the given subsystem.
func (c *ServerConfig) event(level, subsystem, user, remote, msg string) {
	if c.Event != nil {
		c.Event(level, subsystem, user, remote, msg)
	}
}
