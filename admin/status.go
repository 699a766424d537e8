package admin

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strconv"
	"time"

	"mailgate/cert"
	"mailgate/eventlog"
	"mailgate/firmware"
)

// Fact is one line of the system status: a name and its value.
type Fact struct{ Name, Value string }

// Status is what `get system status` and the web UI's status page show,
// as of now.
func (s *Service) Status(now time.Time) []Fact {
	c, rev := s.Config()
	ca, _ := cert.Describe(s.id.CACertPEM)
	return []Fact{
		{"Version", "mailgate " + Version},
		{"Hostname", c.System.Global.Hostname},
		{"Operation mode", c.System.Global.OperationMode},
		{"Device CA", ca.Subject},
		{"Factory certificate SHA-256", s.FactoryFingerprint()},
		{"SSH host key", s.HostKeyFingerprint},
		{"Configuration revision", strconv.FormatUint(rev, 10)},
		{"System time", now.Format(time.RFC1123Z)},
		{"Uptime", now.Sub(s.Started).Truncate(time.Second).String()},
		{"Platform", runtime.GOOS + "/" + runtime.GOARCH},
		{"Firmware", s.FirmwareStatus()},
	}
}

// ErrNoFirmware refuses an upgrade where the appliance does not run from
// its disk image (make run, tests).
var ErrNoFirmware = errors.New("this appliance does not run from the mailgate image: there is no root partition to upgrade")

// FirmwareStatus describes the root partitions, or says that the
// appliance does not run from its image.
func (s *Service) FirmwareStatus() string {
	if s.Firmware == nil {
		return "not running from the appliance image"
	}
	return s.Firmware.Status()
}

// InstallFirmware installs an upgrade file read from r (see
// firmware.Runtime.Install), progress lines going to progress, and logs
// the outcome as an event of user at remote; from says where the file
// came from ("upload … in the web UI", a URL). The caller reboots.
func (s *Service) InstallFirmware(ctx context.Context, user, remote, from string, r io.Reader, progress io.Writer) (firmware.Manifest, error) {
	m, err := s.Firmware.Install(ctx, r, progress)
	if err != nil {
		s.Event(eventlog.Error, "system", user, remote, "firmware upgrade from "+from+" failed: "+err.Error())
		return m, err
	}
	s.Event(eventlog.Notice, "system", user, remote, "firmware "+m.Version+" installed from "+from+"; rebooting to try it")
	return m, nil
}
