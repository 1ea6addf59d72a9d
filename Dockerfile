# HM-VNet grand-challenge container (HECKTOR 2025 tasks 1 and 2, and the 2026 all-in-one profile).
#
#   ./build.sh                                  # docker, or podman where no docker daemon runs; tag hmvnet
#   ./build.sh --target serve -t hmvnet-serve   # the HTTP "invoke" variant (port 4743)
#   docker run --rm --gpus all --network none -v $PWD/in:/input:ro -v $PWD/out:/output -v /tmp/s:/tmp hmvnet
#
# Stages: `builder` (compilers; resolves the pinned requirements once and turns them into wheels, compiling
# pyradiomics-bhklab from source), `app` (the runtime: installs those wheels offline, no compilers added),
# `serve` (app + HTTP service label/entrypoint) and the default last stage `batch` (app + process.py).
# See docs/container.md.

# Pinned default: CUDA 12.6 runtime, which the T4 instances need; torch falls back to CPU without a GPU.
# Here (no Docker Hub): --build-arg BASE_IMAGE=localhost/python-slim:3.11 (shared/tools/container-sandbox.sh).
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime

# ---------------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder
USER root
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore DEBIAN_FRONTEND=noninteractive
# The pytorch runtime image has no C compiler; pyradiomics-bhklab only ships an sdist.
RUN if ! command -v gcc >/dev/null 2>&1; then \
      apt-get update -qq \
      && apt-get install -y -qq --no-install-recommends build-essential \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /build
COPY requirements.txt ./
# torch comes from the base image when it already holds the pinned version (the pytorch image does): the
# `torch==` line is dropped so pip never downloads a second multi-GB torch. The comparison ignores the local
# label (2.13.0+cu126 == 2.13.0). A base without it (python-slim) keeps the line and gets torch as a wheel.
# Then one resolution against what the base already has (`--dry-run --report`), and a wheel for each result.
RUN pinned=$(sed -n 's/^torch==\([^ ;#]*\).*/\1/p' requirements.txt); \
    have=$(python -c "import importlib.metadata as m; print(m.version('torch').split('+')[0])" 2>/dev/null || true); \
    if [ -n "$pinned" ] && [ "$have" = "$pinned" ]; then \
      echo "torch $have comes from the base image"; grep -v '^torch==' requirements.txt > requirements.image.txt; \
    else \
      echo "base torch '${have:-none}' != pinned '$pinned': torch is installed from requirements.txt"; \
      cp requirements.txt requirements.image.txt; \
    fi \
 && python -m pip install --dry-run --quiet --report /build/report.json -r requirements.image.txt \
 && python -c "import json; r = json.load(open('/build/report.json')); print('\n'.join(sorted(p['metadata']['name'] + '==' + p['metadata']['version'] for p in r['install'])))" > resolved.txt \
 && cat resolved.txt \
 && python -m pip wheel --no-deps --wheel-dir /wheels -r resolved.txt \
 && cp requirements.image.txt /wheels/requirements.image.txt

# ---------------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS app
USER root
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/app \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/torch \
    HOME=/home/user
# Offline install of exactly the wheels the builder resolved (bind mount: the wheels never become a layer).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links /wheels -r /wheels/requirements.image.txt \
 && python -m pip check
RUN (groupadd --system user || true) \
 && useradd --system --no-log-init --create-home --home-dir /home/user --gid user user
WORKDIR /opt/app
# Weights before code: they change less often. The folder is the default of hmvnet.data.weights (weights/ next to
# process.py); $HMVNET_WEIGHTS, or a mounted /opt/ml/model holding weights, take precedence.
COPY weights/ /opt/app/weights/
COPY pyproject.toml README.md process.py /opt/app/
COPY hmvnet/ /opt/app/hmvnet/
# Byte-code compiled now (the root filesystem may be read-only at run time), then the smoke import as `user`.
RUN python -m compileall -q /opt/app/hmvnet /opt/app/process.py
USER user
RUN python -c "import hmvnet, torch, monai, radiomics, sksurv, SimpleITK; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
 && python /opt/app/process.py --help >/dev/null

# ---------------------------------------------------------------------------------------------------------------
# HTTP invoke variant: GET /health, POST /invoke on port 4743 (build with --target serve).
FROM app AS serve
LABEL org.grand-challenge.api-method="invoke"
EXPOSE 4743
ENTRYPOINT ["python", "-m", "hmvnet.app.serve", "--host", "0.0.0.0", "--port", "4743"]

# ---------------------------------------------------------------------------------------------------------------
# Default: one case per run, /input -> /output (HMVNET_OUTPUTS=segmentation|survival|both|hecktor2026).
FROM app AS batch
ENTRYPOINT ["python", "/opt/app/process.py"]
