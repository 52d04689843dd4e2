// runtime/run_config: a config file of any bytes loads or is refused with a seqmesh::Error (the
// TOML parser is toml++; inputs it cannot take are screened first); a config that loads writes
// TOML that loads back to the same TOML.
#include <cstdlib>

#include "runtime/run_config.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return seqmesh::fuzz::Refusing([&] {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const seqmesh::RunConfig c = seqmesh::RunConfig::Parse(text, "fuzz.toml");
    const std::string once = c.ToToml();
    if (seqmesh::RunConfig::Parse(once, "the written config").ToToml() != once) std::abort();
  });
}
