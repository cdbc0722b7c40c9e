# syntax=docker/dockerfile:1.7
#
# The nasop trainer image: `nasop-trainer`, run by trainer pods (`nasop-trainer train`, the
# ArchitectureSearch's spec.trial.image) and latency-probe pods (`nasop-trainer probe`,
# spec.probe.image), with the libtorch it links against. The operator sets the pods' command
# (`nasop-trainer`), user (65532), read-only root file system and a /tmp emptyDir.
#
# Build from the repository root (BuildKit; docker/trainer.Dockerfile.dockerignore applies):
#
#   # CUDA (trainer pods on GPU nodes; PyPI's torch wheel, ~4.6 GB of CUDA libraries; also
#   # runs on CPU-only nodes):
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/nasop-dev/nasop-trainer:0.1.0-cuda .
#
#   # CPU (latency probes on CPU device classes, CPU-only training; PyTorch's CPU index, small):
#   docker build -f docker/trainer.Dockerfile \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
#     -t ghcr.io/nasop-dev/nasop-trainer:0.1.0-cpu .
#
# Build arguments:
#   TORCH_INDEX_URL  where pip finds torch==2.11.0: https://pypi.org/simple (default, the CUDA
#                    build the Makefile uses), https://download.pytorch.org/whl/cpu (CPU only),
#                    or another PyTorch index such as https://download.pytorch.org/whl/cu128
#   RUST_VERSION     the rust image's toolchain (the workspace needs at least 1.89)
#
# libtorch, as in the Makefile: torch==2.11.0 (what tch 0.24 expects) is pip-installed into a
# virtual environment and cargo builds with LIBTORCH_USE_PYTORCH=1, so torch-sys finds libtorch
# through the venv's Python. build/libtorch_rpath.rs bakes that torch/lib directory into the
# binary's run path (and keeps libtorch_cuda linked where the wheel has it); the runtime stage
# puts the same directory at the same absolute path, so the binary starts without
# LD_LIBRARY_PATH.

ARG RUST_VERSION=1.95

# Debian 12 (bookworm) in both stages: the binary and libtorch need the builder's glibc.
FROM rust:${RUST_VERSION}-bookworm AS builder
# bash with pipefail: a failing command on the left of a pipe fails the step.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_VERSION=2.11.0
ARG NUMPY_VERSION=2.4.6
ARG TORCH_INDEX_URL=https://pypi.org/simple

# torch-sys runs the venv's Python and compiles a C++ wrapper around libtorch.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv g++ \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/torch \
    PATH=/opt/torch/bin:$PATH \
    LIBTORCH_USE_PYTORCH=1 \
    CARGO_INCREMENTAL=0

# NumPy only keeps `import torch` (run by torch-sys's build script) quiet.
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv "$VIRTUAL_ENV" \
 && pip install --disable-pip-version-check \
      --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple \
      "torch==${TORCH_VERSION}" "numpy==${NUMPY_VERSION}" \
 && python -c "import torch; print('torch', torch.__version__, 'at', torch.__file__)"

WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p nasop-trainer --bin nasop-trainer \
 && install -D -m 0755 target/release/nasop-trainer /out/usr/local/bin/nasop-trainer

# The libtorch directory at the path baked into the binary, with the libraries beside it that
# its own run paths ($ORIGIN/..) name: torch.libs (auditwheel-bundled libraries) and nvidia/
# (cuBLAS, cuDNN, NCCL, ... of the CUDA build), where the wheel has them.
RUN set -eu; \
    site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    readelf -d /out/usr/local/bin/nasop-trainer | grep -E '\((RUNPATH|RPATH)\)' | grep -F "$site/torch/lib" >/dev/null \
      || { echo "error: the binary's run path does not name $site/torch/lib" >&2; exit 1; }; \
    for d in torch/lib torch.libs nvidia; do \
      if [ -d "$site/$d" ]; then cp -a --parents "$site/$d" /out/; fi; \
    done; \
    if ldd /out/usr/local/bin/nasop-trainer | grep 'not found'; then exit 1; fi

# Debian slim rather than distroless: it has ldconfig, which the NVIDIA container toolkit's
# hook runs in the container to register the driver's libcuda.so.1 (libtorch dlopens it).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin nonroot
COPY --from=builder /out/ /
# Pods mount an emptyDir at /tmp (the root file system is read-only). The driver capabilities
# tell the NVIDIA container runtime what to mount on GPU nodes (no effect elsewhere); the
# device plugin chooses the GPUs.
ENV HOME=/tmp \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 65532:65532
# Fails the build when libtorch does not load or compute in this image (no GPU needed).
RUN ["/usr/local/bin/nasop-trainer", "info"]
ENTRYPOINT ["/usr/local/bin/nasop-trainer"]
CMD ["info"]
