#!/usr/bin/env bash
# System tools some tests use: RELION's command-line tools (reading our star exports) and
# SLURM with munge (a single-node test cluster the workflow test starts and stops itself),
# and Chromium (the HTML report is opened in it, headless, through Playwright).
# Installed with apt when missing and we may (root, or passwordless sudo); otherwise the
# tests that need them are skipped and say why.
set -euo pipefail
missing=()
command -v relion_star_handler >/dev/null || missing+=(relion)
[ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v sbatch >/dev/null && [ -x /usr/sbin/munged ] \
  || missing+=(slurmctld slurmd slurm-client munge)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  echo "cannot install ${missing[*]} (not root): tests that need them will be skipped" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
