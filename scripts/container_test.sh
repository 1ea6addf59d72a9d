#!/usr/bin/env bash
# Build the image and run it on the sample case exactly as grand-challenge does, then compare the outputs with
# test/expected (scripts/compare_outputs.py: Dice >= 0.99 per label, identical grid, |risk diff| <= 1e-4).
#
#   bash scripts/container_test.sh [--no-build] [--image NAME] [--input DIR] [--expected DIR]
#                                  [--weights DIR] [--serve] [--skip-both] [--skip-2026]
#                                  [-- extra ./build.sh arguments]
#
# Runs: (1) default profile (both outputs), compared with every file in test/expected (--skip-both: not run);
#       (2) HMVNET_OUTPUTS=segmentation: the mask is compared and rfs.json must be absent;
#       (3) with --serve: the `serve` target (tag NAME-serve) started detached with the same restrictions,
#           GET /health polled from inside the container (--network none) until 200, one POST /invoke -> 201,
#           its outputs compared like (2);
#       (4) HMVNET_OUTPUTS=hecktor2026 as the 2026 platform runs it: the weights (--weights DIR, else weights/)
#           packed as model.tar.gz, extracted and mounted read-only at /opt/ml/model, a 25-minute limit;
#           scripts/check_2026_outputs.py checks the four files and their types, rfs.json = -risk of
#           test/expected/rfs.json, and the log must show the models loaded from /opt/ml/model
#           (--skip-2026: not run).
# --input/--expected default to test/input and test/expected; --weights DIR is mounted at /opt/ml/model:ro
# (the platform's model tarball location), else the weights baked into the image are used.
# Each run: --network none, /input read-only, a fresh tmpfs /tmp, a fresh /output, --memory 16g, non-root
# --user, --read-only root filesystem. Environment: TAG (image, default hmvnet), BASE_IMAGE (build argument;
# with podman and no BASE_IMAGE, the local stand-in localhost/python-slim:3.11 is used when present),
# GPUS=all (adds --gpus all), KEEP=1 (keep the output folders). Exit status: 0 all good, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
image=${TAG:-hmvnet}
input=test/input
expected=test/expected
weights=
serve=0
both=1
run2026=1
build_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --image) image=$2; shift ;;
    --input) input=$2; shift ;;
    --expected) expected=$2; shift ;;
    --weights) weights=$2; shift ;;
    --serve) serve=1 ;;
    --skip-both) both=0 ;;
    --skip-2026) run2026=0 ;;
    --) shift; build_args=("$@"); break ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "container_test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

. scripts/container_engine.sh  # the working directory is the repository root here
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python

step() { printf '\n=== %s\n' "$*"; }

if [ "$build" = 1 ]; then
  base=${BASE_IMAGE:-}
  if [ -z "$base" ] && [ "$engine" = podman ] && podman image exists localhost/python-slim:3.11; then
    base=localhost/python-slim:3.11
    echo "no docker daemon: building FROM the local stand-in $base (set BASE_IMAGE to override)"
  fi
  [ -n "$base" ] && build_args=(--build-arg "BASE_IMAGE=$base" "${build_args[@]}")
  step "build $image"
  TAG=$image ./build.sh "${build_args[@]}"
  if [ "$serve" = 1 ]; then
    step "build $image-serve (target serve)"
    TAG=$image-serve ./build.sh --target serve "${build_args[@]}"
  fi
fi
for img in "$image" $([ "$serve" = 1 ] && echo "$image-serve"); do
  "$engine" image inspect "$img" >/dev/null 2>&1 || { echo "no image $img: build it first" >&2; exit 1; }
done

for needed in "$input/images/ct" "$input/images/pet"; do
  [ -d "$needed" ] || { echo "container_test.sh: $needed missing (the sample case)" >&2; exit 1; }
done
[ -d "$expected" ] || { echo "container_test.sh: $expected missing (expected outputs)" >&2; exit 1; }
input=$(cd "$input" && pwd)
expected=$(cd "$expected" && pwd)
mounts=(-v "$input:/input:ro")
[ -n "$weights" ] && mounts+=(-v "$(cd "$weights" && pwd):/opt/ml/model:ro")
# The platform's restrictions, shared by every run.
restrict=(--network none --read-only --tmpfs /tmp:rw,size=8g,mode=1777 --memory 16g --memory-swap 16g
          --shm-size 8g --user user)
[ -n "${GPUS:-}" ] && restrict+=(--gpus "$GPUS")

work=$(mktemp -d /tmp/hmvnet-container-test.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
failures=0

# run_case NAME [extra engine-run arguments]: runs the image on $input into $work/NAME (a fresh folder).
run_case() {
  local name=$1; shift
  local out="$work/$name"
  mkdir -p "$out"
  chmod 0777 "$out"  # the container user (not root) must be able to write it, as on the platform
  step "run $name: $image on $input -> $out"
  local start rc=0
  start=$(date +%s)
  "$engine" run --rm "${restrict[@]}" "${mounts[@]}" -v "$out:/output" "$@" "$image" || rc=$?
  echo "run $name: exit status $rc after $(( $(date +%s) - start )) s (model loading included)"
  echo "files written:"; (cd "$out" && find . -type f | sort | sed 's/^/  /')
  return "$rc"
}

seg=images/tumor-lymph-node-segmentation/output.mha
compare_seg_only() {
  step "compare $1 with $expected ($seg; rfs.json must be absent)"
  if [ -f "$expected/$seg" ]; then
    "$py" scripts/compare_outputs.py "$work/$1" "$expected" --files "$seg" --absent rfs.json
  else
    echo "$expected/$seg missing" >&2; return 1
  fi
}

if [ "$both" = 1 ]; then
  if run_case both; then
    step "compare both with $expected"
    "$py" scripts/compare_outputs.py "$work/both" "$expected" || failures=$((failures + 1))
  else
    failures=$((failures + 1))
  fi
fi

if run_case segmentation -e HMVNET_OUTPUTS=segmentation; then
  compare_seg_only segmentation || failures=$((failures + 1))
else
  failures=$((failures + 1))
fi

# serve_case: the invoke service in its own container; requests come from inside it (no network at all).
serve_case() {
  local out="$work/serve" name="hmvnet-serve-test-$$" status=1 code=""
  mkdir -p "$out" && chmod 0777 "$out"
  step "serve: $image-serve, GET /health until 200, then POST /invoke"
  "$engine" run -d --name "$name" "${restrict[@]}" "${mounts[@]}" -v "$out:/output" \
    -e HMVNET_OUTPUTS=segmentation "$image-serve" >/dev/null || return 1
  local probe='import sys, urllib.request as u, urllib.error as e
req = u.Request("http://127.0.0.1:4743" + sys.argv[1], method=sys.argv[2], data=b"" if sys.argv[2] == "POST" else None)
try:
    r = u.urlopen(req, timeout=600); print(r.status, r.read().decode())
except e.HTTPError as x:
    print(x.code, x.read().decode())
except OSError as x:
    print("000", x)'
  local start
  start=$(date +%s)
  for _ in $(seq 1 240); do
    code=$("$engine" exec "$name" python -c "$probe" /health GET 2>/dev/null || echo "gone")
    echo "  /health: $code"
    case "$code" in 200*) status=0; break ;; gone*) break ;; esac
    sleep 1
  done
  if [ "$status" = 0 ]; then
    echo "ready after $(( $(date +%s) - start )) s"
    code=$("$engine" exec "$name" python -c "$probe" /invoke POST)
    echo "  /invoke: $code"
    case "$code" in 201*) status=0 ;; *) status=1 ;; esac
  fi
  if [ "$status" != 0 ]; then
    echo "service log:"; "$engine" logs "$name" 2>&1 | tail -20
  fi
  "$engine" stop -t 10 "$name" >/dev/null 2>&1 || true
  "$engine" rm -f "$name" >/dev/null 2>&1 || true
  return "$status"
}

if [ "$serve" = 1 ]; then
  if serve_case; then
    compare_seg_only serve || failures=$((failures + 1))
  else
    failures=$((failures + 1))
  fi
fi

# hecktor2026_case: weights as the 2026 platform gives them (model.tar.gz extracted read-only at /opt/ml/model).
hecktor2026_case() {
  local src=${weights:-weights} model="$work/model" log="$work/hecktor2026.log"
  step "hecktor2026: pack $src as model.tar.gz, extract to $model, mount it at /opt/ml/model:ro"
  tar -czf "$work/model.tar.gz" -C "$src" . && mkdir -p "$model" && tar -xzf "$work/model.tar.gz" -C "$model"
  chmod -R a+rX "$model"
  local model_mounts=(-v "$input:/input:ro" -v "$model:/opt/ml/model:ro")
  local out="$work/hecktor2026" rc=0 start
  mkdir -p "$out" && chmod 0777 "$out"
  start=$(date +%s)
  timeout 1500 "$engine" run --rm "${restrict[@]}" "${model_mounts[@]}" -v "$out:/output" \
    -e HMVNET_OUTPUTS=hecktor2026 "$image" 2>&1 | tee "$log" || rc=$?
  echo "run hecktor2026: exit status $rc after $(( $(date +%s) - start )) s (limit 1500 s)"
  [ "$rc" = 0 ] || return 1
  grep -q "models loaded from /opt/ml/model" "$log" || { echo "weights were not loaded from /opt/ml/model" >&2; return 1; }
  "$py" scripts/check_2026_outputs.py "$out" "$input" --expected-risk "$expected/rfs.json"
}

if [ "$run2026" = 1 ]; then
  hecktor2026_case || failures=$((failures + 1))
fi

step "result"
if [ "$failures" -eq 0 ]; then
  echo "container test passed ($image)"
else
  echo "container test FAILED: $failures step(s) ($image)"
fi
[ "${KEEP:-0}" = 1 ] && echo "outputs kept in $work"
[ "$failures" -eq 0 ]
