#!/usr/bin/env bash
# Build the HM-VNet image with docker, or with podman where no docker daemon answers.
#   ./build.sh                                                  # tag $TAG (default hmvnet), target batch
#   ./build.sh --target serve -t hmvnet-serve                   # HTTP invoke variant
#   ./build.sh --build-arg BASE_IMAGE=localhost/python-slim:3.11 # any extra argument goes to `build`
# With podman the build gets `--network host` (pip reaches the registries) and, when pip on this host has a
# find-links folder of local wheels (e.g. /opt/wheels with a CPU torch wheel), that folder mounted read-only
# at the same path, so torch==X resolves to it (set FIND_LINKS_MOUNT=0 to skip).
set -euo pipefail
cd "$(dirname "$0")"
TAG=${TAG:-hmvnet}

. scripts/container_engine.sh
if [ "$engine" = docker ]; then
  build_cmd=(docker build)
else
  build_cmd=(podman build --network host)
  links=$(pip3 config get global.find-links 2>/dev/null || true)
  if [ "${FIND_LINKS_MOUNT:-1}" != 0 ] && [ -n "$links" ] && [ -d "$links" ]; then
    build_cmd+=(-v "$links:$links:ro")
  fi
fi

# Later -t arguments add tags; "$@" can also override BASE_IMAGE or pick --target serve.
echo "+ ${build_cmd[*]} -t $TAG $* ." >&2
start=$(date +%s)
"${build_cmd[@]}" -t "$TAG" "$@" .
echo "build.sh: built $TAG in $(( $(date +%s) - start )) s with $engine" >&2
