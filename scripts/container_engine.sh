# Sourced by build.sh, export.sh and scripts/container_test.sh: sets $engine to "docker" when a docker daemon
# answers (`docker info`; a docker client without a daemon does not count), else "podman"; otherwise exits 1.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
elif command -v podman >/dev/null 2>&1; then
  engine=podman
else
  echo "$(basename "$0"): neither a working docker daemon (docker info) nor podman found" >&2
  exit 1
fi
