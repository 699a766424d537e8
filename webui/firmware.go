package webui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"mailgate/admin"
	"mailgate/eventlog"
	"mailgate/firmware"
)

const (
	// maxUploadBytes bounds a firmware upload: the largest root file
	// system plus the header and the multipart framing.
	maxUploadBytes = firmware.MaxRootSize + 1<<20
	// uploadTimeout is how long an upload and its installation may take
	// (the server's own read and write timeouts are shorter).
	uploadTimeout  = 30 * time.Minute
	maxFieldBytes  = 1 << 10  // of a form field of the upload form
	maxProgressLen = 16 << 10 // of Install's progress shown on the page
)

// firmwareBody is the firmware page: the running version, the state of
// the root partitions and the upload form, or the outcome of an upload.
type firmwareBody struct {
	Version   string
	Status    string
	OnImage   bool   // the appliance runs from its disk image: upgrades are possible
	Installed string // version just installed; the system is rebooting
	Progress  string // Install's progress lines
	MaxMiB    int
}

func (s *Server) firmwareBody() firmwareBody {
	return firmwareBody{Version: admin.Version, Status: s.svc.FirmwareStatus(), OnImage: s.svc.Firmware != nil, MaxMiB: maxUploadBytes >> 20}
}

func (s *Server) firmwarePage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.page(w, rq, http.StatusOK, "firmware", "firmware", "Firmware", s.firmwareBody(), nil)
}

// upload runs h for a multipart upload of an administrator who may change
// the appliance. The body is left unread for h to stream (it checks the
// form token, see uploadForm); whatever h leaves of it is read and
// discarded before the answer, so that the browser, still sending, sees
// the answer rather than a reset connection.
func (s *Server) upload(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxUploadBytes)
		rq := s.authorize(w, r, true)
		if rq == nil {
			return
		}
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(uploadTimeout))
		rc.SetWriteDeadline(time.Now().Add(uploadTimeout + time.Minute))
		d := &drainer{ResponseWriter: w, body: r.Body}
		if !s.denied(d, r, rq) {
			h(d, r, rq)
		}
	}
}

// drainer reads the rest of the request body before the response starts.
type drainer struct {
	http.ResponseWriter
	body    io.Reader
	drained bool
}

func (d *drainer) WriteHeader(status int) {
	if !d.drained {
		d.drained = true
		io.Copy(io.Discard, d.body)
	}
	d.ResponseWriter.WriteHeader(status)
}

func (d *drainer) Write(p []byte) (int, error) {
	if !d.drained {
		d.WriteHeader(http.StatusOK)
	}
	return d.ResponseWriter.Write(p)
}

func (d *drainer) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// uploadForm reads the small fields of a multipart form up to its file
// part named file, which it returns with the fields. The form token must
// come before the file (browsers send the fields in the order of the
// form), so that nothing of the file is used before the token is
// checked. On failure it answers r itself and returns nil.
func (s *Server) uploadForm(w http.ResponseWriter, r *http.Request, rq *request, file string) (*multipart.Part, map[string]string) {
	mr, err := r.MultipartReader()
	if err != nil {
		s.fail(w, r, rq, http.StatusBadRequest, "The upload cannot be read: it is not a multipart/form-data form.")
		return nil, nil
	}
	fields := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err != nil {
			switch {
			case err == io.EOF:
				if s.checkToken(w, r, rq, fields["csrf"]) {
					s.fail(w, r, rq, http.StatusBadRequest, "No file was uploaded.")
				}
			case tooLarge(err):
				s.fail(w, r, rq, http.StatusRequestEntityTooLarge, fmt.Sprintf("The upload is too large (at most %d MiB).", maxUploadBytes>>20))
			default:
				s.fail(w, r, rq, http.StatusBadRequest, "The upload cannot be read: "+err.Error())
			}
			return nil, nil
		}
		name := p.FormName()
		if name == file {
			if !s.checkToken(w, r, rq, fields["csrf"]) {
				return nil, nil
			}
			return p, fields
		}
		if _, dup := fields[name]; dup || len(fields) >= 8 || p.FileName() != "" {
			s.fail(w, r, rq, http.StatusBadRequest, "The upload cannot be read: unexpected form field "+strconv.Quote(name)+".")
			return nil, nil
		}
		v, err := io.ReadAll(io.LimitReader(p, maxFieldBytes+1))
		if err != nil || len(v) > maxFieldBytes {
			s.fail(w, r, rq, http.StatusBadRequest, "The upload cannot be read: form field "+strconv.Quote(name)+" is too large or truncated.")
			return nil, nil
		}
		fields[name] = string(v)
	}
}

func tooLarge(err error) bool {
	var tooBig *http.MaxBytesError
	return errors.As(err, &tooBig)
}

// firmwareInstall streams the uploaded upgrade file into
// Firmware.Install, as `execute restore image` does with a download; on
// success the appliance reboots to try the new version once the answer
// is sent.
func (s *Server) firmwareInstall(w http.ResponseWriter, r *http.Request, rq *request) {
	body := s.firmwareBody()
	again := func(status int, msg string) {
		s.page(w, rq, status, "firmware", "firmware", "Firmware", body, &view{Error: msg})
	}
	if s.svc.Firmware == nil {
		s.svc.Event(eventlog.Warning, "system", rq.user, remoteString(remoteIP(r)), "firmware upgrade refused: not running from the appliance image")
		again(http.StatusConflict, "This appliance does not run from the mailgate disk image: there is no root partition to upgrade.")
		return
	}
	part, fields := s.uploadForm(w, r, rq, "image")
	if part == nil {
		return
	}
	if fields["confirm"] != "yes" {
		again(http.StatusBadRequest, "Nothing was installed: confirm that the system will reboot.")
		return
	}
	if part.FileName() == "" {
		again(http.StatusBadRequest, "Nothing was installed: choose an upgrade file (mailgate-<target>.upgrade).")
		return
	}
	from := "upload " + strconv.Quote(truncate(part.FileName(), 100)) + " in the web UI"
	src := &uploadReader{r: part}
	progress := &progressBuffer{}
	m, err := s.svc.InstallFirmware(r.Context(), rq.user, remoteString(remoteIP(r)), from, src, progress)
	body.Progress = progress.String()
	if err != nil {
		status, msg := installError(err, src.err)
		if r.Context().Err() != nil {
			return // the browser is gone
		}
		again(status, msg)
		return
	}
	body.Installed, body.Status = m.Version, s.svc.FirmwareStatus()
	s.page(w, rq, http.StatusOK, "firmware", "firmware", "Firmware", body, &view{Flash: fmt.Sprintf("Firmware %s installed. The system is rebooting.", m.Version)})
	// The page is complete (it has a Content-Length): once it is sent,
	// the reboot may close the connection.
	http.NewResponseController(w).Flush()
	go s.svc.Reboot()
}

// installError is the status and message of a failed Install: the
// upload's own read error, or Install's (a fault of the file, or not now).
func installError(err, readErr error) (int, string) {
	const nothing = " The running version stays."
	switch {
	case readErr != nil && tooLarge(readErr):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("The upload is too large (at most %d MiB); nothing was installed.", maxUploadBytes>>20) + nothing
	case readErr != nil:
		return http.StatusBadRequest, "The upload was interrupted (" + readErr.Error() + "); nothing was installed." + nothing
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusRequestTimeout, "The upload was interrupted (" + err.Error() + "); nothing was installed." + nothing
	}
	msg := "The firmware was not installed: " + strings.TrimSuffix(err.Error(), ".") + "." + nothing
	var bad *firmware.FileError
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest, msg
	case errors.Is(err, firmware.ErrTrial), errors.Is(err, firmware.ErrRebootFirst), errors.Is(err, firmware.ErrBusy):
		return http.StatusConflict, msg
	}
	return http.StatusInternalServerError, msg
}

// uploadReader keeps the error of reading the upload itself, as opposed
// to Install's own errors.
type uploadReader struct {
	r   io.Reader
	err error
}

func (u *uploadReader) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if err != nil && err != io.EOF && u.err == nil {
		u.err = err
	}
	return n, err
}

// progressBuffer keeps the first maxProgressLen bytes of Install's
// progress lines.
type progressBuffer struct{ bytes.Buffer }

func (b *progressBuffer) Write(p []byte) (int, error) {
	if room := maxProgressLen - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}
