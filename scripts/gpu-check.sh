#!/usr/bin/env bash
# The one prepared check of the CUDA backend on a lent GPU machine (issue 16; docs/CUDA.md).
#
#   scripts/gpu-check.sh pack   here, on the build machine: builds the CUDA tests and benchmark
#                               and copies them, with the shared libraries they need that a GPU
#                               machine lacks, into .gpu-carry/ (ignored by git; carry it)
#   scripts/gpu-check.sh run    on the GPU machine: runs tests/cuda and bench/step_cuda from
#                               .gpu-carry/ (or builds them when that machine can), writing
#                               nvidia-smi's report, the logs and a summary under $OUT
#
# Why carry: a GPU machine here has CUDA, CMake and Python but none of the Debian packages the
# build needs (oneDNN, toml++, PCRE2, ICU, gRPC, GoogleTest), so it cannot build seqmesh. The
# CUDA test links the runtime statically; its shared libraries beyond glibc, libstdc++ and CUDA
# are oneDNN (the CPU reference's GEMM; 40 MB), libOpenCL (oneDNN's) and libgomp (linked with
# --as-needed, so not ICU or PCRE2). cuBLASLt is opened at run time from the GPU machine's CUDA.
# The device tool sends the checkout the session started in, so run `pack` in that checkout
# (or copy .gpu-carry/ there), add `/.gpu-carry/` to its .git/info/exclude, and name .gpu-carry
# in carry. The whole run takes about 2 minutes; a 480 s limit leaves room for a rerun.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
carry=${GPU_CARRY:-$root/.gpu-carry}
build=${BUILD_DIR:-$root/build}
targets=(cuda_backend_test device_choice_test step_cuda)

pack() {
  "$root/scripts/build.sh" "${targets[@]}"
  rm -rf "$carry"
  mkdir -p "$carry/bin" "$carry/lib"
  cp "$build/tests/cuda/cuda_backend_test" "$build/tests/cuda/device_choice_test" \
     "$build/bench/step_cuda" "$carry/bin/"
  strip "$carry"/bin/*
  # Every shared library outside glibc, libstdc++/libgcc and CUDA's own.
  for b in "$carry"/bin/*; do
    ldd "$b" | awk '/=> \//{print $3}'
  done | sort -u | while read -r lib; do
    case $(basename "$lib") in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda.so*|libcudart.so*|libcublas*) ;;
      *) cp -L "$lib" "$carry/lib/" ;;
    esac
  done
  git -C "$root" rev-parse HEAD > "$carry/commit"
  echo "packed $(du -sh "$carry" | cut -f1) into $carry (commit $(cut -c1-12 "$carry/commit")):"
  ls "$carry/bin" "$carry/lib"
}

run() {
  out=${OUT:?"run needs OUT, the folder the results go to (the device tool sets it)"}
  mkdir -p "$out"
  local bin
  if [ -x "$carry/bin/cuda_backend_test" ]; then
    bin=$carry/bin
    export LD_LIBRARY_PATH="$carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    echo "no carried build in $carry: building here (needs seqmesh's build dependencies)"
    if ! "$root/scripts/build.sh" "${targets[@]}" > "$out/build.log" 2>&1; then
      echo "gpu-check: the build failed (see build.log): this machine lacks seqmesh's build" \
           "dependencies; run 'scripts/gpu-check.sh pack' on the build machine and carry" \
           ".gpu-carry" | tee "$out/summary.txt"
      exit 1
    fi
    bin=$out/bin
    mkdir -p "$bin"
    cp "$build/tests/cuda/cuda_backend_test" "$build/tests/cuda/device_choice_test" \
       "$build/bench/step_cuda" "$bin/"
  fi
  # cuBLASLt from this machine's CUDA (the toolkit's lib64 or the pip wheel's).
  local wheel
  wheel=$(python3 -c 'import nvidia.cublas as c, os; print(os.path.dirname(c.__file__))' \
          2>/dev/null || true)
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib ${wheel:+$wheel/lib}; do
    if ls "$d"/libcublasLt.so.* >/dev/null 2>&1; then
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
      break
    fi
  done
  {
    echo "commit: $(cat "$carry/commit" 2>/dev/null || git -C "$root" rev-parse HEAD || echo ?)"
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
  } > "$out/summary.txt"
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
  local rc=0
  set +e
  timeout 240 "$bin/cuda_backend_test" --gtest_output="xml:$out/cuda_backend_test.xml" \
    > "$out/cuda_backend_test.log" 2>&1
  echo "cuda_backend_test: exit $?" >> "$out/summary.txt"
  timeout 60 "$bin/device_choice_test" > "$out/device_choice_test.log" 2>&1
  echo "device_choice_test: exit $?" >> "$out/summary.txt"
  timeout 180 "$bin/step_cuda" > "$out/step_cuda.log" 2>&1
  echo "step_cuda: exit $?" >> "$out/summary.txt"
  set -e
  grep -E "tests? ran|^\[  (PASSED|SKIPPED|FAILED) +\] [0-9]+ tests?|^\[  FAILED  \] [A-Z]" \
    "$out/cuda_backend_test.log" >> "$out/summary.txt" || true
  cat "$out/step_cuda.log" >> "$out/summary.txt"
  cat "$out/summary.txt"
  grep -q "exit [^0]" "$out/summary.txt" && rc=1
  return $rc
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *)
    echo "usage: scripts/gpu-check.sh pack|run (see the header of scripts/gpu-check.sh)" \
      >&2
    exit 2
    ;;
esac
