// Command mailgate is the appliance process: on the appliance image it is
// started by init; on a workstation `make run` starts it with the
// development profile and a local data directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
	_ "time/tzdata" // time zones without the host's zoneinfo (the image has none)

	"mailgate/appliance"
	"mailgate/firmware"
)

func main() {
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	envInt := func(name string) int {
		v := os.Getenv(name)
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			fmt.Fprintf(os.Stderr, "mailgate: %s=%q is not a port number (1-65535)\n", name, v)
			os.Exit(2)
		}
		return n
	}
	var opt appliance.Options
	flag.StringVar(&opt.DataDir, "data", env("MAILGATE_DATA", "/perm/mailgate"), "data directory (configuration, queue, logs)")
	profile := flag.String("profile", env("MAILGATE_PROFILE", "appliance"), "factory profile: appliance (standard ports) or dev (unprivileged ports)")
	flag.StringVar(&opt.ListenHost, "listen", env("MAILGATE_LISTEN", ""), "address to bind services to (empty: all)")
	flag.IntVar(&opt.SSHPort, "ssh-port", envInt("MAILGATE_SSH_PORT"), "SSH CLI port (0: from the configuration)")
	flag.IntVar(&opt.HTTPSPort, "https-port", envInt("MAILGATE_HTTPS_PORT"), "web UI port (0: from the configuration)")
	flag.IntVar(&opt.SMTPPort, "smtp-port", envInt("MAILGATE_SMTP_PORT"), "SMTP port (0: from the configuration)")
	flag.IntVar(&opt.SMTPSPort, "smtps-port", envInt("MAILGATE_SMTPS_PORT"), "SMTPS port (0: from the configuration)")
	flag.IntVar(&opt.MSAPort, "msa-port", envInt("MAILGATE_MSA_PORT"), "submission port (0: from the configuration)")
	flag.IntVar(&opt.POP3Port, "pop3-port", envInt("MAILGATE_POP3_PORT"), "POP3 port in server mode (0: from the configuration)")
	flag.IntVar(&opt.POP3SPort, "pop3s-port", envInt("MAILGATE_POP3S_PORT"), "POP3S port in server mode (0: from the configuration)")
	dnsServer := flag.String("dns-server", env("MAILGATE_DNS_SERVER", ""), "DNS server host:port overriding system dns (test networks)")
	flag.IntVar(&opt.MXPort, "mx-port", envInt("MAILGATE_MX_PORT"), "port for MX deliveries instead of 25 (test networks)")
	console := flag.String("console", "", "also print the banner and address changes here (the image: /dev/console)")
	flag.StringVar(&opt.ReadyFile, "ready-file", "", "file written once the services are up (the image's init confirms an upgrade on it)")
	flag.BoolVar(&opt.ManageICMP, "manage-icmp", false, "let allowaccess ping switch the kernel's answers to ping (the image, or a network namespace of its own)")
	flag.BoolVar(&opt.ManageNetwork, "manage-network", false, "apply system interface and system route to the kernel's links, addresses and routes (the image, or a network namespace of its own)")
	flag.Parse()
	switch *profile {
	case "appliance":
	case "dev":
		opt.Dev = true
	default:
		fmt.Fprintf(os.Stderr, "mailgate: unknown profile %q (appliance or dev)\n", *profile)
		os.Exit(2)
	}
	if *dnsServer != "" {
		opt.DNSServers = []string{*dnsServer}
	}
	opt.Console = os.Stdout
	if *console != "" {
		if f, err := os.OpenFile(*console, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			opt.Console = io.MultiWriter(os.Stdout, f)
		} else {
			fmt.Fprintln(os.Stderr, "mailgate: console:", err)
		}
	}
	opt.Firmware = firmware.Detect()
	a, err := appliance.Start(opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailgate:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	reboot := false
	select {
	case s := <-sig:
		fmt.Println("mailgate: stopping on", s)
	case <-a.RebootRequested():
		reboot = true
		fmt.Println("mailgate: rebooting")
	}
	if err := a.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "mailgate:", err)
	}
	if reboot && opt.Firmware != nil {
		// The machine reboots: gokrazy stops the other services.
		if err := opt.Firmware.Reboot(context.Background(), true); err != nil {
			fmt.Fprintln(os.Stderr, "mailgate: reboot:", err)
		}
		time.Sleep(time.Minute)
		os.Exit(1)
	}
	if reboot {
		restart()
	}
}

// restart replaces the process with a fresh copy of itself: a reboot of
// the appliance software (the image's init reboots the machine instead).
func restart() {
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, os.Environ())
	}
	fmt.Fprintln(os.Stderr, "mailgate: restart failed:", err)
	os.Exit(1)
}
