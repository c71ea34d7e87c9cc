# syntax=docker/dockerfile:1
# SlimInfer-serve container. Builds with the project's own scripts (scripts/setup.sh, then CMake as
# scripts/test.sh does) and runs as a non-root user with only the server's shared libraries.
#   docker build -t sliminfer-serve:cuda .                       # CUDA (default; nvcc 13, sm_90a)
#   docker build -t sliminfer-serve:cpu --build-arg VARIANT=cpu . # CPU only, Debian 12
#   docker build -t sliminfer-serve:fetch --target model-fetcher .   # init image: scripts/fetch-model.sh
#   docker run --gpus all -p 50051:50051 -p 8000:8000 -v $PWD/models:/models:ro sliminfer-serve:cuda
# Ports: 50051 gRPC, 8000 HTTP (OpenAI API, /health, /metrics).
# The model comes from the /models volume (SLIMINFER_MODEL, default the SmolLM2 GGUF that
# scripts/fetch-model.sh downloads); the Kubernetes manifests fill it with the fetch image.
ARG VARIANT=cuda
ARG CUDA_IMAGE_TAG=13.0.1
ARG CUDA_BASE=ubuntu24.04

# ---- base images per variant (selected by VARIANT below)
FROM nvidia/cuda:${CUDA_IMAGE_TAG}-devel-${CUDA_BASE} AS build-base-cuda
ENV SLIM_CMAKE_ARGS="-DSLIM_WITH_CUDA=ON"
FROM debian:12 AS build-base-cpu
ENV SLIM_CMAKE_ARGS="-DSLIM_WITH_CUDA=OFF"
FROM nvidia/cuda:${CUDA_IMAGE_TAG}-runtime-${CUDA_BASE} AS runtime-base-cuda
FROM debian:12-slim AS runtime-base-cpu

# ---- build: scripts/setup.sh installs the toolchain and libraries, CMake builds the binaries
FROM build-base-${VARIANT} AS build
ARG CMAKE_EXTRA_ARGS=""
ENV DEBIAN_FRONTEND=noninteractive PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLIM_BUILD_TESTS=OFF ${SLIM_CMAKE_ARGS} ${CMAKE_EXTRA_ARGS} \
 && cmake --build build -j "$(nproc)" --target sliminfer-server sliminfer-cli sliminfer-bench
# Runtime libraries: what the binaries load (among them the distribution's compiled cpp-httplib,
# libcpp-httplib.so.*, with the OpenSSL, zlib and brotli libraries it links), minus glibc (the
# runtime base has the same one) and CUDA / driver libraries (the CUDA runtime image and the NVIDIA container toolkit provide them).
RUN mkdir -p /out/bin /out/lib \
 && cp build/bin/sliminfer-server build/bin/sliminfer-cli build/bin/sliminfer-bench /out/bin/ \
 && ldd /out/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u \
    | grep -Ev '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*)\.so|/libcuda\.so|/usr/local/cuda|/libcu(blas|blasLt|dart)\.so' \
    | xargs -r cp -L -t /out/lib/ \
 && LD_LIBRARY_PATH=/out/lib /out/bin/sliminfer-server --version

# ---- model fetcher (init container): scripts/fetch-model.sh needs python3 -m pip, unzip, sha256sum
FROM debian:12-slim AS model-fetcher
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-pip unzip ca-certificates \
 && rm -rf /var/lib/apt/lists/* && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin slim
COPY scripts/fetch-model.sh /opt/sliminfer/scripts/fetch-model.sh
ENV SLIM_MODELS_DIR=/models HOME=/tmp PIP_NO_CACHE_DIR=1
USER 10001:10001
ENTRYPOINT ["bash", "/opt/sliminfer/scripts/fetch-model.sh"]

# ---- runtime
FROM runtime-base-${VARIANT} AS runtime
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin slim \
 && mkdir -p /models && chown 10001:10001 /models
COPY --from=build /out/bin/ /opt/sliminfer/bin/
COPY --from=build /out/lib/ /opt/sliminfer/lib/
ENV PATH=/opt/sliminfer/bin:$PATH \
    LD_LIBRARY_PATH=/opt/sliminfer/lib \
    SLIMINFER_MODEL=/models/SmolLM2-135M-Instruct.Q4_1.gguf \
    SLIMINFER_DEVICE=auto \
    SLIMINFER_PORT=50051 \
    SLIMINFER_HTTP_PORT=8000
VOLUME ["/models"]
EXPOSE 50051 8000
USER 10001:10001
ENTRYPOINT ["sliminfer-server"]
