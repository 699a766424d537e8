// Command mkimage builds the appliance images (make image):
//
//	go run ./image/mkimage -out dist                 # amd64 and rpi
//	go run ./image/mkimage -targets amd64 -version v1.2.3
//
// It prints where each file is and its size.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"mailgate/image"
)

func main() {
	out := flag.String("out", "dist", "output directory")
	targets := flag.String("targets", "amd64,rpi", "comma-separated targets: amd64 (UEFI PCs and VMs), rpi (Raspberry Pi 4 and 5)")
	version := flag.String("version", "", "version the appliance reports (default: git describe)")
	size := flag.Int64("size", image.DefaultDiskSize/image.MiB, "disk image size in MiB")
	ca := flag.String("ca-bundle", "", "CA bundle to install (default: the build host's Debian bundle)")
	upgradeOnly := flag.Bool("upgrade-only", false, "build only the upgrade files, not the disk images")
	flag.Parse()
	if *version == "" {
		*version = gitVersion()
	}
	epoch := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fail(fmt.Errorf("SOURCE_DATE_EPOCH: %v", err))
		}
		epoch = time.Unix(n, 0).UTC()
	} else if t := gitCommitTime(); !t.IsZero() {
		epoch = t
	}
	wd, err := os.Getwd()
	if err != nil {
		fail(err)
	}
	for _, name := range strings.Split(*targets, ",") {
		t, ok := image.Targets[strings.TrimSpace(name)]
		if !ok {
			fail(fmt.Errorf("unknown target %q (amd64, rpi)", name))
		}
		start := time.Now()
		res, err := image.Build(context.Background(), image.Options{
			Target: t, Version: *version, Epoch: epoch, DiskSize: *size * image.MiB,
			OutDir: *out, ModuleDir: wd, CABundle: *ca, Log: os.Stderr, SkipDisk: *upgradeOnly,
		})
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s (%s, %s, built in %s)\n", t.Name, t.GOARCH, *version, time.Since(start).Round(time.Second))
		if res.Image != "" {
			fmt.Printf("  image:   %s  %d MiB (%s on disk)\n", res.Image, res.ImageSize/image.MiB, onDisk(res.Image))
		}
		fmt.Printf("  upgrade: %s  %.1f MiB, root sha256 %s\n", res.Upgrade, float64(res.RootSize)/image.MiB, res.RootSHA256)
	}
}

func onDisk(path string) string {
	out, err := exec.Command("du", "-h", path).Output()
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out))[0]
}

func gitVersion() string {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}

func gitCommitTime() time.Time {
	out, err := exec.Command("git", "log", "-1", "--format=%ct").Output()
	if err != nil {
		return time.Time{}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkimage:", err)
	os.Exit(1)
}
