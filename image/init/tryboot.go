package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"mailgate/firmware"
)

// An upgrade writes the new root to the inactive partition and asks
// gokrazy for a test boot: the kernel command line keeps root= on the old
// partition and gains gokrazy.try_boot_inactive=1, and the old root's init
// switches into the new one once (rewriting the flag so that the boot after
// this one is the old root again). This watch runs in the new root: when
// the appliance reports ready within tryBootDeadline, the new partition is
// made the permanent root; otherwise the machine reboots into the old one.
const defaultTryBootDeadline = 5 * time.Minute

// bootState reads the partition state before the services start. When
// this is not a test boot, a marker a failed test boot left behind is
// removed now, before an upgrade in this boot could add a new one.
func bootState() (firmware.State, bool) {
	st, err := firmware.ReadState()
	if err != nil {
		log.Printf("try-boot: %v", err)
		return st, false
	}
	if !st.Trial {
		if err := firmware.CleanCmdline(st.BootDevice); err != nil {
			log.Printf("removing old test-boot markers from the command line: %v", err)
		}
	}
	return st, true
}

// watchTryBoot confirms or abandons a test boot.
func watchTryBoot(st firmware.State, tryBootDeadline time.Duration) {
	rt := firmware.New(firmware.Socket)
	log.Printf("try-boot: running from partition %d, waiting up to %v for the appliance", st.Running, tryBootDeadline)
	deadline := time.Now().Add(tryBootDeadline)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(readyFile); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := rt.Confirm(ctx)
			cancel()
			if err != nil {
				log.Printf("try-boot: making the new root permanent: %v", err)
				console("mailgate: the upgrade could not be made permanent (%v); the next boot returns to the previous version", err)
				return
			}
			if err := firmware.CleanCmdline(st.BootDevice); err != nil {
				log.Printf("try-boot: removing the test-boot markers from the command line: %v", err)
			}
			log.Printf("try-boot: partition %d is now the root", st.Running)
			console("mailgate: upgrade confirmed; root partition %d is now permanent", st.Running)
			return
		}
		time.Sleep(2 * time.Second)
	}
	console("mailgate: the upgraded system did not become ready within %v; rebooting into the previous version", tryBootDeadline)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := rt.Reboot(ctx, false); err != nil {
		log.Printf("try-boot: reboot: %v", err)
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}
}

func console(format string, args ...any) {
	f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	fmt.Fprintf(f, format+"\n", args...)
	f.Close()
}
