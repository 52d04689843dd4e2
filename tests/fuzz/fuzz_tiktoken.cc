// runtime/tiktoken: a rank file of any bytes loads or is refused with a seqmesh::Error; a file
// that loads encodes a fixed text of every kind of piece, and decodes it back to the text.
#include <cstdlib>
#include <memory>

#include "runtime/tiktoken.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = seqmesh::fuzz::WriteScratch("fuzz.tiktoken", data, size);
  return seqmesh::fuzz::Refusing([&] {
    const auto tok = seqmesh::TiktokenTokenizer::Load(path, "cl100k_base");
    static const std::string text =
        "Hello, world! I'm here  \n\n\t 12345 caf\xC3\xA9 \xF0\x9F\x98\x80 <|endoftext|> x";
    std::vector<int32_t> ids;
    tok->Encode(text, ids);
    if (tok->Decode(ids) != text) std::abort();
  });
}
