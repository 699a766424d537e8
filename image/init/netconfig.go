package main

import (
	"log"
	"os"
	"os/exec"
	"time"
)

// Network configuration. The appliance (started with -manage-network)
// applies `config system interface` and `system route` itself, at once
// (package netif); what is left here is port1 in dhcp mode. The appliance
// keeps staticNetworkFile present while port1 is static and removes it in
// dhcp mode; netconfig runs gokrazy's DHCP client on the first interface
// while the file is absent, and stops it within pollInterval of the file
// appearing (and starts it again when it goes).
const (
	dhcpPath          = "/gokrazy/dhcp"
	staticNetworkFile = "/perm/mailgate/network.json"
	firstInterface    = "eth0"
	pollInterval      = 2 * time.Second
)

func port1Static() bool {
	_, err := os.Stat(staticNetworkFile)
	return err == nil
}

// netconfig never returns: it runs the DHCP client while port1 is in dhcp
// mode, again a second after it exits.
func netconfig() {
	logged := false
	for {
		if port1Static() {
			if !logged {
				log.Printf("port1 is static (%s): no DHCP client", staticNetworkFile)
				logged = true
			}
			time.Sleep(pollInterval)
			continue
		}
		logged = false
		cmd := exec.Command(dhcpPath, "-interface", firstInterface)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			log.Printf("start %s: %v", dhcpPath, err)
			time.Sleep(time.Second)
			continue
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t := time.NewTicker(pollInterval)
	watch:
		for {
			select {
			case err := <-done:
				log.Printf("%s exited: %v", dhcpPath, err)
				time.Sleep(time.Second)
				break watch
			case <-t.C:
				if port1Static() {
					log.Printf("port1 is static now: stopping the DHCP client")
					cmd.Process.Kill()
					<-done
					break watch
				}
			}
		}
		t.Stop()
	}
}
