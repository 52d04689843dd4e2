#!/usr/bin/env bash
# Installs the Debian packages seqmesh needs that are missing. Idempotent: a package already
# installed is not touched, and with nothing missing it makes no network call.
set -euo pipefail

packages=(
  cmake g++ make pkg-config          # build
  libdnnl-dev                        # CPU matmul (oneDNN)
  libtomlplusplus-dev                # run configuration files
  libpcre2-dev                       # tokenizers' split patterns (Unicode properties)
  libicu-dev                         # tokenizer.json's Unicode normalizers (NFC, NFKC, ...)
  libgtest-dev                       # tests
  openmpi-bin libopenmpi-dev         # CPU collectives and process launch (parallel/)
  protobuf-compiler libprotobuf-dev  # the wire format (proto/)
  libgrpc++-dev protobuf-compiler-grpc  # the coordinator service (gRPC)
  liburing-dev libisal-dev fio       # SSD offload: io_uring, CRC32C, and the benchmark's anchor
  pybind11-dev python3-dev python3-numpy  # the Python package (python/), for /usr/bin/python3
  python3-pytest python3-torch       # its tests; PyTorch is their reference, never a dependency
  clang libclang-rt-14-dev libomp-dev  # the libFuzzer harnesses (tests/fuzz, scripts/fuzz.sh)
  libcairo2-dev fonts-dejavu-core     # `seqmesh report`'s charts (SVG, PNG)
  slurm-wlm munge iproute2 util-linux  # tests of a real Slurm and of hosts in network namespaces
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
