# fsb's container image: `docker build -t fsb:dev .` (deploy/20-daemonset.yaml runs it as the node
# agent; the same image runs any other fsb command). Two stages on Debian 12, the platform fsb is
# built and tested on (scripts/setup): every dependency is a Debian package, nothing is downloaded.

# ---- build: the compiler and the -dev packages of scripts/setup's PACKAGES, without the test and
# benchmark ones (FSB_BUILD_TESTS=OFF: the tests run in CI, not in the image build).
FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libssl-dev libzstd-dev libxxhash-dev liburing-dev libcurl4-openssl-dev \
      nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libcpp-httplib-dev libyaml-cpp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFSB_BUILD_TESTS=OFF \
 && ninja -C /build fsb \
 && strip --strip-unneeded /build/fsb

# ---- runtime: the runtime packages of every library CMakeLists.txt links (Debian 12 names, checked
# with dpkg -S against the libraries `ldd fsb` lists; liburing and xxHash are kept although the
# linker drops them while no code calls them yet) and CA certificates for S3 over TLS.
FROM debian:12-slim
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libcurl4 libssl3 libzstd1 libxxhash0 liburing2 \
      libspdlog1.10 libfmt9 libyaml-cpp0.7 libcpp-httplib0.11 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/fsb /usr/local/bin/fsb
# Fail the image build, not the first pod, when a library is missing.
RUN ! ldd /usr/local/bin/fsb | grep 'not found' && /usr/local/bin/fsb --help >/dev/null
# No USER: the node agent must run as root (with most capabilities dropped by its DaemonSet) to
# read every file and restore owners; the pod spec sets runAsUser explicitly.
ENTRYPOINT ["/usr/local/bin/fsb"]
