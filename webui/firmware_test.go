package webui

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailgate/admin"
	"mailgate/firmware"
	"mailgate/firmware/firmwaretest"
)

// newFakeFirmware is an installer that checks upgrade files for amd64
// as the image's does, into memory.
func newFakeFirmware() *firmwaretest.Fake {
	return &firmwaretest.Fake{Arch: "amd64", StatusText: "root partition 2; upgrades go to partition 3"}
}

// upgradeFile builds an upgrade file of a random root file system of size
// bytes: its header and its payload.
func upgradeFile(t *testing.T, version string, size int) (header, payload []byte) {
	t.Helper()
	payload = make([]byte, size)
	rand.Read(payload)
	return firmwaretest.Header(t, version, "amd64", payload), payload
}

type uploadPart struct {
	name, file string // file "": a plain field
	data       []byte
	wait       <-chan struct{} // when not nil, rest is written once it is closed
	rest       []byte
}

// upload posts a multipart form of parts, written in order while the
// server reads them (through a pipe, not buffered).
func (b *browser) upload(path string, parts ...uploadPart) (int, string) {
	b.e.t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, p := range parts {
			var w io.Writer
			var err error
			if p.file != "" {
				w, err = mw.CreateFormFile(p.name, p.file)
			} else {
				w, err = mw.CreateFormField(p.name)
			}
			if err == nil {
				_, err = w.Write(p.data)
			}
			if err == nil && p.wait != nil {
				select {
				case <-p.wait:
					_, err = w.Write(p.rest)
				case <-time.After(10 * time.Second):
					err = fmt.Errorf("the start of the upload was not read before its end was sent")
				}
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req, _ := http.NewRequest("POST", b.e.base+path, pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, body := b.do(req)
	return resp.StatusCode, body
}

func TestFirmwareNotOnImage(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	b.mustLogin("admin", testPassword)
	if !strings.Contains(b.last, "not running from the appliance image") {
		t.Error("status page lacks the firmware status")
	}
	code, body := b.get("/firmware")
	if code != 200 || !strings.Contains(body, "mailgate "+admin.Version) || !strings.Contains(body, "not running from the appliance image") ||
		!strings.Contains(body, "possible only when the appliance runs from the mailgate disk image") {
		t.Fatalf("firmware page: %d\n%s", code, body)
	}
	if strings.Contains(body, `type="file"`) {
		t.Fatal("upload form offered without an image to upgrade")
	}
	header, payload := upgradeFile(t, "v9", 1000)
	code, body = b.upload("/firmware", uploadPart{name: "csrf", data: []byte(formToken(body))}, uploadPart{name: "confirm", data: []byte("yes")},
		uploadPart{name: "image", file: "mailgate-amd64.upgrade", data: append(header, payload...)})
	if code != http.StatusConflict || !strings.Contains(body, "does not run from the mailgate disk image") {
		t.Fatalf("upload: %d\n%s", code, body)
	}
	if !e.hasEvent("admin", "firmware upgrade refused") {
		t.Error("refusal not logged")
	}
}

func TestFirmwareUpload(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	e.addAdmin("viewer", testPassword, "read_only_prof", "")
	fw := newFakeFirmware()
	e.svc.Firmware = fw
	var reboots atomic.Int32
	rebooted := make(chan struct{}, 1)
	e.svc.Reboot = func() {
		reboots.Add(1)
		rebooted <- struct{}{}
	}
	header, payload := upgradeFile(t, "v2.0.1", 1<<20+17)
	file := func(data []byte) uploadPart {
		return uploadPart{name: "image", file: "mailgate-amd64.upgrade", data: data}
	}
	yes := uploadPart{name: "confirm", data: []byte("yes")}
	calls := fw.Calls

	// A read-only administrator sees the state, not the form, and cannot
	// upload.
	ro := e.browser()
	ro.mustLogin("viewer", testPassword)
	code, body := ro.get("/firmware")
	if code != 200 || !strings.Contains(body, fw.Status()) || strings.Contains(body, `type="file"`) {
		t.Fatalf("read-only firmware page: %d\n%s", code, body)
	}
	if code, body := ro.upload("/firmware", uploadPart{name: "csrf", data: []byte(formToken(body))}, yes, file(append(header, payload...))); code != http.StatusForbidden || !strings.Contains(body, "Permission denied") {
		t.Fatalf("read-only upload: %d", code)
	}

	b := e.browser()
	b.mustLogin("admin", testPassword)
	code, body = b.get("/firmware")
	for _, want := range []string{"mailgate " + admin.Version, fw.Status(), `enctype="multipart/form-data"`, `type="file"`, `name="confirm"`, "reboot the system"} {
		if !strings.Contains(body, want) {
			t.Errorf("firmware page lacks %q", want)
		}
	}
	if code != 200 || !strings.Contains(body, `<a href="/firmware" class="here">Firmware</a>`) {
		t.Fatalf("firmware page: %d", code)
	}
	tok := uploadPart{name: "csrf", data: []byte(formToken(body))}

	// The form token must come first and be right.
	for _, parts := range [][]uploadPart{
		{yes, file(append(header, payload...))},
		{{name: "csrf", data: []byte("forged")}, yes, file(append(header, payload...))},
		{yes, file(append(header, payload...)), tok},
	} {
		if code, body := b.upload("/firmware", parts...); code != http.StatusForbidden || !strings.Contains(body, "The form has expired") {
			t.Fatalf("upload without the form token first: %d", code)
		}
	}
	if !e.hasEvent("admin", "missing or wrong form token (POST /firmware)") {
		t.Error("refused token not logged")
	}
	if code, body := b.upload("/firmware", tok, file(append(header, payload...))); code != http.StatusBadRequest || !strings.Contains(body, "confirm that the system will reboot") {
		t.Fatalf("unconfirmed upload: %d", code)
	}
	if n := calls(); n != 0 {
		t.Fatalf("Install called %d times by refused uploads", n)
	}

	// Faulty files: Install's error, a status that fits, an event.
	bad := bytes.Clone(payload)
	bad[len(bad)/2] ^= 1
	other := bytes.Replace(header, []byte(`"arch":"amd64"`), []byte(`"arch":"arm64"`), 1)
	for _, c := range []struct {
		data []byte
		code int
		want string
	}{
		{append(bytes.Clone(header), bad...), http.StatusBadRequest, "checksum mismatch: received "},
		{[]byte("PK\x03\x04 a zip file"), http.StatusBadRequest, "not a mailgate upgrade file"},
		{append(bytes.Clone(other), payload...), http.StatusBadRequest, "upgrade file is for amd64 (arm64), this appliance is amd64"},
		{append(bytes.Clone(header), payload[:1000]...), http.StatusBadRequest, "upgrade file is truncated"},
	} {
		code, body := b.upload("/firmware", tok, yes, file(c.data))
		if code != c.code || !strings.Contains(body, "The firmware was not installed: "+c.want) || !strings.Contains(body, "The running version stays.") {
			t.Errorf("%s: %d\n%s", c.want, code, body)
		}
		if !strings.Contains(body, `type="file"`) {
			t.Errorf("%s: the form is not offered again", c.want)
		}
		if !e.hasEvent("admin", `firmware upgrade from upload "mailgate-amd64.upgrade" in the web UI failed: `+c.want) {
			t.Errorf("%s: failure not logged", c.want)
		}
	}
	if n := calls(); n != 4 {
		t.Fatalf("Install called %d times for 4 faulty files", n)
	}
	if n := reboots.Load(); n != 0 {
		t.Fatalf("rebooted %d times after failed uploads", n)
	}

	// A good file reaches Install byte for byte, streamed: the payload is
	// sent only once Install has read the header.
	header1 := fw.HeaderRead()
	code, body = b.upload("/firmware", tok, yes,
		uploadPart{name: "image", file: "mailgate-amd64.upgrade", data: header, wait: header1, rest: payload})
	if code != 200 || !strings.Contains(body, "Firmware v2.0.1 installed. The system is rebooting.") ||
		!strings.Contains(body, "Writing version v2.0.1 (1048593 bytes)") || !strings.Contains(body, "Checksum verified") {
		t.Fatalf("upload: %d\n%s", code, body)
	}
	if strings.Contains(body, `type="file"`) {
		t.Error("the upload form is offered while the system reboots")
	}
	m, got := fw.Last()
	if !bytes.Equal(got, payload) || m.Version != "v2.0.1" {
		t.Fatalf("Install received %d bytes of %q, want the %d bytes of v2.0.1", len(got), m.Version, len(payload))
	}
	select {
	case <-rebooted:
	case <-time.After(5 * time.Second):
		t.Fatal("no reboot after the upgrade")
	}
	if !e.hasEvent("admin", `firmware v2.0.1 installed from upload "mailgate-amd64.upgrade" in the web UI; rebooting to try it`) {
		t.Error("upgrade not logged")
	}
	if n := reboots.Load(); n != 1 {
		t.Fatalf("%d reboots", n)
	}
}

func TestInstallErrorStatus(t *testing.T) {
	for _, c := range []struct {
		err, readErr error
		code         int
		want         string
	}{
		{errors.New("x"), &http.MaxBytesError{Limit: maxUploadBytes}, http.StatusRequestEntityTooLarge, "The upload is too large"},
		{errors.New("x"), io.ErrUnexpectedEOF, http.StatusBadRequest, "The upload was interrupted (unexpected EOF)"},
		{&firmware.FileError{Msg: "upgrade file: manifest has no version"}, nil, http.StatusBadRequest, "The firmware was not installed: upgrade file: manifest has no version."},
		{&firmware.FileError{Msg: "root file system of 9 bytes does not fit the 8-byte partition"}, nil, http.StatusBadRequest, "does not fit"},
		{firmware.ErrTrial, nil, http.StatusConflict, "test boot still being confirmed"},
		{firmware.ErrRebootFirst, nil, http.StatusConflict, "reboot before the next upgrade."},
		{firmware.ErrBusy, nil, http.StatusConflict, "another firmware upgrade is in progress"},
		{errors.New("writing the root partition: PUT /update/root: 500"), nil, http.StatusInternalServerError, "writing the root partition"},
		{errors.New("checksum mismatch: gokrazy wrote a, received b; nothing was switched"), nil, http.StatusInternalServerError, "gokrazy wrote"},
	} {
		code, msg := installError(c.err, c.readErr)
		if code != c.code || !strings.Contains(msg, c.want) || !strings.HasSuffix(msg, "The running version stays.") {
			t.Errorf("%v / %v: %d %q", c.err, c.readErr, code, msg)
		}
	}
}
