// What every harness shares: a scratch directory of its own (the readers under test open files),
// and the one kind of failure a bad input may cause, a seqmesh::Error (SM_CHECK's one line that
// names the problem). Anything else escapes the harness and libFuzzer reports it as a crash:
// another exception type, a sanitizer report, an abort, a timeout or an allocation above
// -malloc_limit_mb.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "runtime/check.h"

namespace seqmesh::fuzz {

// <TMPDIR>/seqmesh-fuzz-<pid>, made once and removed at exit (never destroyed: the exit handler
// reads it after static destructors may have run).
inline const std::string& ScratchDir() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    auto* d = new std::string(std::string(tmp && *tmp ? tmp : "/tmp") + "/seqmesh-fuzz-" +
                              std::to_string(getpid()));
    std::filesystem::create_directories(*d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return d;
  }();
  return *dir;
}

// Writes `size` bytes to <scratch>/<name> and returns its path.
inline std::string WriteScratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = ScratchDir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Runs `body`; a seqmesh::Error is a refusal, the expected outcome of a bad input.
template <typename F>
int Refusing(F&& body) {
  try {
    body();
  } catch (const seqmesh::Error& e) {
    // A refusal is one line that names the problem.
    const std::string what = e.what();
    if (what.empty()) std::abort();
  }
  return 0;
}

}  // namespace seqmesh::fuzz
