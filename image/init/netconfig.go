package main

import (
	"log"
	"os"
	"syscall"
)

// Network configuration. The appliance renders `config system interface`,
// `system route` and `system dns` for the first interface into
// staticNetworkFile when that interface is static, and removes the file
// when it uses DHCP; gokrazy's DHCP client applies either. A change takes
// effect at the next boot.
const (
	dhcpPath          = "/gokrazy/dhcp"
	staticNetworkFile = "/perm/mailgate/network.json"
	firstInterface    = "eth0"
)

// netconfig replaces the process with gokrazy's DHCP client, in static
// mode when the appliance asked for a static address.
func netconfig() {
	argv := []string{dhcpPath, "-interface", firstInterface}
	if _, err := os.Stat(staticNetworkFile); err == nil {
		argv = append(argv, "-static_network_config="+staticNetworkFile)
	}
	err := syscall.Exec(dhcpPath, argv, os.Environ())
	log.Fatalf("exec %s: %v", dhcpPath, err)
}
