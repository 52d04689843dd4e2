// runtime/json: any bytes parse or are refused with a seqmesh::Error; a parsed document dumps to
// text that parses back to the same dump (the writer and the reader agree).
#include <cstdlib>
#include <string_view>

#include "runtime/json.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return seqmesh::fuzz::Refusing([&] {
    const seqmesh::Json doc =
        seqmesh::Json::Parse(std::string_view(reinterpret_cast<const char*>(data), size));
    const std::string once = doc.Dump();
    const std::string twice = seqmesh::Json::Parse(once, "the dump").Dump();
    if (once != twice) std::abort();
  });
}
