#!/usr/bin/env bash
# Best-effort install of the Debian programs some tests drive for real: a browser for the web viewer, Orthanc
# (with its DICOMweb plugin) for the PACS worker, dicom3tools' dciodvfy to validate every DICOM ptxseg writes.
# Installs only what is missing, only as root with apt-get; otherwise says so and leaves the tests to skip
# with their reason. Never fails the build: a missing program is a skip, not an error.
set -u

# program -> Debian package(s) that provide it
declare -A WANT=(
  [chromium]="chromium"
  [chromedriver]="chromium-driver"
  [Orthanc]="orthanc"
  [dciodvfy]="dicom3tools"
)
# file -> Debian package, for what is not a program on the PATH
declare -A WANT_FILES=(
  [/usr/share/orthanc/plugins/libOrthancDicomWeb.so]="orthanc-dicomweb"
)

missing=()
for prog in "${!WANT[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("${WANT[$prog]}")
done
for file in "${!WANT_FILES[@]}"; do
  [ -e "$file" ] || missing+=("${WANT_FILES[$file]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: not installing ${missing[*]} (needs root and apt-get); the tests that need them will skip"
  exit 0
fi
echo "system-deps: apt-get install ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
# install the packages, never start their services (Orthanc's tests start their own instances)
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
fi
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/ptxseg-apt.log 2>&1; then
  # a fresh machine may have no package lists yet
  apt-get update -q >>/tmp/ptxseg-apt.log 2>&1
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/ptxseg-apt.log 2>&1 \
    || echo "system-deps: could not install ${missing[*]} (see /tmp/ptxseg-apt.log); the tests that need them will skip"
fi
[ -n "${added_policy:-}" ] && rm -f /usr/sbin/policy-rc.d
exit 0
