// runtime/hf_tokenizer: a tokenizer.json of any bytes loads or is refused with a seqmesh::Error;
// a file that loads encodes a fixed text of every kind of piece (added tokens, Unicode, digits,
// whitespace runs) and decodes its ids, which must not fail.
#include <cstdlib>
#include <memory>

#include "runtime/hf_tokenizer.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = seqmesh::fuzz::WriteScratch("tokenizer.json", data, size);
  return seqmesh::fuzz::Refusing([&] {
    const auto tok = seqmesh::HfTokenizer::Load(path);
    static const std::string text =
        "Hello, world! I'm here  \n\n\t 12345 caf\xC3\xA9 \xF0\x9F\x98\x80 </s><s> <|endoftext|> "
        "\xE2\x96\x81x \xE6\x97\xA5\xE6\x9C\xAC";
    std::vector<int32_t> ids;
    tok->Encode(text, ids);
    for (const int32_t id : ids)
      if (id < 0 || id >= tok->vocab_size()) std::abort();  // every id is the tokenizer's
    tok->Decode(ids);
  });
}
