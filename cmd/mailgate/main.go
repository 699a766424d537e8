// Command mailgate is the appliance process: on the appliance image it is
// started by init; on a workstation `make run` starts it with the
// development profile and a local data directory.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	_ "time/tzdata" // time zones without the host's zoneinfo (the image has none)

	"mailgate/appliance"
)

func main() {
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	envInt := func(name string) int {
		n, _ := strconv.Atoi(os.Getenv(name))
		return n
	}
	var opt appliance.Options
	flag.StringVar(&opt.DataDir, "data", env("MAILGATE_DATA", "/perm/mailgate"), "data directory (configuration, queue, logs)")
	profile := flag.String("profile", env("MAILGATE_PROFILE", "appliance"), "factory profile: appliance (standard ports) or dev (unprivileged ports)")
	flag.StringVar(&opt.ListenHost, "listen", env("MAILGATE_LISTEN", ""), "address to bind services to (empty: all)")
	flag.IntVar(&opt.SSHPort, "ssh-port", envInt("MAILGATE_SSH_PORT"), "SSH CLI port (0: from the configuration)")
	flag.Parse()
	switch *profile {
	case "appliance":
	case "dev":
		opt.Dev = true
	default:
		fmt.Fprintf(os.Stderr, "mailgate: unknown profile %q (appliance or dev)\n", *profile)
		os.Exit(2)
	}
	opt.Console = os.Stdout
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
