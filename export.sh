#!/usr/bin/env bash
# Save the image as the gzipped tarball grand-challenge takes:  ./export.sh [IMAGE] [OUT.tar.gz]
# (defaults: $TAG or hmvnet, and hmvnet.tar.gz). Uses docker when its daemon answers, else podman.
set -euo pipefail
cd "$(dirname "$0")"
IMAGE=${1:-${TAG:-hmvnet}}
OUT=${2:-hmvnet.tar.gz}
. scripts/container_engine.sh
"$engine" image inspect "$IMAGE" >/dev/null || { echo "export.sh: no image $IMAGE (run ./build.sh)" >&2; exit 1; }
tmp="$OUT.partial"
trap 'rm -f "$tmp"' EXIT
if [ "$engine" = podman ]; then
  # docker-archive keeps the docker save layout (podman's default for save, stated for clarity)
  podman save --format docker-archive "$IMAGE" | gzip -c > "$tmp"
else
  docker save "$IMAGE" | gzip -c > "$tmp"
fi
mv "$tmp" "$OUT"
trap - EXIT
echo "export.sh: $OUT $(du -h "$OUT" | cut -f1) ($(stat -c %s "$OUT") bytes) from $IMAGE via $engine"
