# syntax=docker/dockerfile:1.7
#
# The nasop operator image: the `nasop` binary (operator and CLI) and the libtorch it links
# against (the controller policies run on libtorch's CPU backend). The Helm chart runs it as
# `nasop operator`.
#
# Build from the repository root (BuildKit; docker/operator.Dockerfile.dockerignore applies):
#
#   docker build -f docker/operator.Dockerfile -t ghcr.io/nasop-dev/nasop-operator:0.1.0 .
#
# Build arguments:
#   TORCH_INDEX_URL  where pip finds torch==2.11.0 (default: PyTorch's CPU-only index, ~200 MB
#                    of libtorch; https://pypi.org/simple gives the CUDA build, ~4.6 GB, which the
#                    operator does not need)
#   RUST_VERSION     the rust image's toolchain (the workspace needs at least 1.89)
#
# libtorch, as in the Makefile: torch==2.11.0 (what tch 0.24 expects) is pip-installed into a
# virtual environment and cargo builds with LIBTORCH_USE_PYTORCH=1, so torch-sys finds libtorch
# through the venv's Python. build/libtorch_rpath.rs bakes that torch/lib directory into the
# binary's run path; the runtime stage puts the same directory at the same absolute path, so the
# binary starts without LD_LIBRARY_PATH.

ARG RUST_VERSION=1.95

# Debian 12 (bookworm) in both stages: the binary and libtorch need the builder's glibc.
FROM rust:${RUST_VERSION}-bookworm AS builder
# bash with pipefail: a failing command on the left of a pipe fails the step.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_VERSION=2.11.0
ARG NUMPY_VERSION=2.4.6
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

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
    cargo build --release --locked -p nasop --bin nasop \
 && install -D -m 0755 target/release/nasop /out/usr/local/bin/nasop

# The libtorch directory at the path baked into the binary, with the libraries beside it that
# its own run paths ($ORIGIN/..) name: torch.libs (auditwheel-bundled libraries) and nvidia/
# (the CUDA libraries of the CUDA build), where the wheel has them.
RUN set -eu; \
    site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    readelf -d /out/usr/local/bin/nasop | grep -E '\((RUNPATH|RPATH)\)' | grep -F "$site/torch/lib" >/dev/null \
      || { echo "error: the binary's run path does not name $site/torch/lib" >&2; exit 1; }; \
    for d in torch/lib torch.libs nvidia; do \
      if [ -d "$site/$d" ]; then cp -a --parents "$site/$d" /out/; fi; \
    done; \
    if ldd /out/usr/local/bin/nasop | grep 'not found'; then exit 1; fi

# glibc, libstdc++ and libgomp of Debian 12 (as the builder), nothing else; user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ /
# The chart mounts an emptyDir at /tmp (the root file system is read-only). At most two
# glibc malloc arenas: the runtime starts a worker thread per core, and with an arena each
# `make bench-scale` on 16 cores measured 246 MiB resident at 5,000 trials against 193 MiB
# with two (docker/README.md).
ENV HOME=/tmp \
    MALLOC_ARENA_MAX=2
# Fails the build when a library of the binary does not resolve in this image.
RUN ["/usr/local/bin/nasop", "--version"]
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/nasop"]
CMD ["operator"]
