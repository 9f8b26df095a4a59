#!/usr/bin/env bash
# Install the Debian packages the tests need: a single-node SLURM cluster (tests/test_slurm.py),
# headless Chromium with a font (report screenshots), git and make (the clean-room check's
# `make release`), and Ghostscript (tests/test_image_formats.py: with a real `gs` installed,
# no image reader may start it). Idempotent: installs only what is missing, so a second run
# does nothing.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge chromium fonts-dejavu-core git make ghostscript)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-debian: all packages present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-debian: need root to install ${missing[*]}" >&2
    exit 1
fi

echo "install-debian: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d exit 101 keeps the packages' postinst from starting daemons: the SLURM test
# starts munged/slurmctld/slurmd itself with its own configuration.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
echo "install-debian: done"
