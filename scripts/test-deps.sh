#!/usr/bin/env bash
# Installs the real peers the tests talk to, when they are missing:
# OpenSSH client, OpenSSL, Postfix (smtp-source/smtp-sink and a private
# relay instance; the machine's own mail setup is left unconfigured), swaks
# with TLS, and headless Chromium.
set -euo pipefail
need=()
command -v ssh >/dev/null || need+=(openssh-client)
command -v openssl >/dev/null || need+=(openssl)
command -v git >/dev/null || need+=(git)
command -v swaks >/dev/null || need+=(swaks)
command -v curl >/dev/null || need+=(curl) # POP3/POP3S client
command -v python3 >/dev/null || need+=(python3) # poplib
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl) # swaks --tls
perl -MIO::Socket::SSL -e1 2>/dev/null || need+=(libio-socket-ssl-perl)
command -v chromium >/dev/null || need+=(chromium) # web UI tests, headless
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2) # network namespaces (allowaccess, netif and network configuration tests)
command -v ping >/dev/null || need+=(iputils-ping)
[ -x /usr/sbin/postfix ] || need+=(postfix)
command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || need+=(postfix)
# SMTP AUTH in the Postfix sink (authentication profiles): Cyrus SASL's
# sasldb and its PLAIN, LOGIN and CRAM-MD5 mechanisms.
[ -x /usr/sbin/saslpasswd2 ] || need+=(sasl2-bin)
ls /usr/lib/*/sasl2/libsasldb.so >/dev/null 2>&1 || need+=(libsasl2-modules-db)
ls /usr/lib/*/sasl2/libcrammd5.so >/dev/null 2>&1 || need+=(libsasl2-modules)
command -v fsck.vfat >/dev/null || [ -x /usr/sbin/fsck.vfat ] || need+=(dosfstools) # image/disk
command -v mdir >/dev/null || need+=(mtools) # image/disk
command -v sfdisk >/dev/null || [ -x /usr/sbin/sfdisk ] || need+=(fdisk) # image/disk
command -v sgdisk >/dev/null || [ -x /usr/sbin/sgdisk ] || need+=(gdisk) # image/disk
command -v file >/dev/null || need+=(file) # image structure test
# The appliance image (make image) and its QEMU boot test (make test-image).
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v mkfs.ext4 >/dev/null || [ -x /usr/sbin/mkfs.ext4 ] || need+=(e2fsprogs)
[ -f /usr/lib/systemd/boot/efi/systemd-bootx64.efi ] || need+=(systemd-boot-efi)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix without a system configuration: nothing listens, nothing is sent.
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
command -v go >/dev/null || { echo "Go is required (https://go.dev/dl/); see README.md" >&2; exit 1; }
