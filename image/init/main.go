// Command init is the appliance image's /gokrazy/init: gokrazy's runtime
// mounts the file systems and supervises the appliance, the DHCP client,
// NTP and the entropy daemon; this program adds the appliance's part of an
// A/B upgrade, the try-boot watch (see tryboot.go).
//
// gokrazy's own HTTP interface is left on its unix socket only: the image
// carries no /etc/gokr-pw.txt, so nothing of it listens on the network.
// The appliance's web UI owns 443 and its SSH CLI owns 22.
package main

import (
	"log"
	"os"
	"os/exec"

	"github.com/gokrazy/gokrazy"

	"mailgate/firmware"
)

// buildTimestamp is set by the image builder (-X main.buildTimestamp).
var buildTimestamp = "unknown"

// Paths inside the image; the image builder puts the programs there.
const (
	appliancePath = "/user/mailgate"
	readyFile     = "/run/mailgate.ready"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "netconfig" {
		netconfig() // never returns
	}
	if err := gokrazy.Boot(buildTimestamp); err != nil {
		log.Fatal(err)
	}
	settings := readSettings()
	st, stateOK := bootState()
	services := []*gokrazy.Service{
		gokrazy.NewService(exec.Command("/gokrazy/randomd")),
		// The DHCP client on port1 while it is in dhcp mode: see
		// netconfig.go. The appliance configures the rest (-manage-network).
		gokrazy.NewService(exec.Command("/gokrazy/init", "netconfig")),
		gokrazy.NewService(exec.Command("/gokrazy/ntp")),
		gokrazy.NewService(exec.Command(appliancePath, append([]string{
			"-data", "/perm/mailgate",
			"-console", "/dev/console", "-manage-icmp", "-manage-network",
			"-ready-file", readyFile}, settings.ApplianceArgs...)...)),
	}
	if err := gokrazy.SuperviseServices(services); err != nil {
		log.Fatal(err)
	}
	deadline := defaultTryBootDeadline
	if settings.TryBootDeadline > 0 {
		deadline = settings.TryBootDeadline
	}
	if stateOK && st.Trial {
		go watchTryBoot(st, deadline)
	}
	select {} // init must never return
}

func readSettings() firmware.InitSettings {
	s, err := firmware.ReadInitSettings()
	if err != nil {
		log.Printf("%v (using the defaults)", err)
	}
	return s
}
