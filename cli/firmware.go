package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"mailgate/admin"
	"mailgate/config"
)

// imageFetchTimeout bounds the download of an upgrade file.
const imageFetchTimeout = 30 * time.Minute

// restoreImage implements `execute restore image <url>`: the upgrade file
// (make image's mailgate-<target>.upgrade) is fetched over HTTP(S),
// written to the inactive root partition and verified; the appliance then
// reboots into it on trial and keeps it once it is up.
func (s *Session) restoreImage(con Console, args []config.Token) error {
	if err := s.usage(con, args, 1, "execute restore image <http(s) URL of a mailgate-<target>.upgrade file>"); err != nil {
		return err
	}
	u, err := url.Parse(args[0].Text)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return s.fail(con, &config.Error{Code: config.CodeValue, Msg: fmt.Sprintf("value parse error before '%s'", args[0].Text), Detail: "an http:// or https:// URL of an upgrade file"})
	}
	if s.svc.Firmware == nil {
		return s.fail(con, admin.ErrNoFirmware)
	}
	if ok, err := s.confirm(con, "This operation will replace the firmware and reboot the system!"); !ok {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), imageFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return s.fail(con, err)
	}
	fmt.Fprintf(con, "Downloading %s...\n", u.Redacted())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s.fail(con, fmt.Errorf("download: %v", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s.fail(con, fmt.Errorf("download: %s", resp.Status))
	}
	m, err := s.svc.InstallFirmware(ctx, s.user, "", u.Redacted(), resp.Body, con)
	if err != nil {
		return s.fail(con, err)
	}
	fmt.Fprintf(con, "Firmware %s installed. The system is rebooting.\n", m.Version)
	s.exited = true
	go s.svc.Reboot()
	return nil
}
