#include "runtime/tokenizer.h"

#include "runtime/check.h"
#include "runtime/hf_tokenizer.h"
#include "runtime/tiktoken.h"

namespace seqmesh {

void ByteTokenizer::Encode(std::string_view text, std::vector<int32_t>& out) const {
  out.reserve(out.size() + text.size());
  for (unsigned char c : text) out.push_back(c);
}

std::string ByteTokenizer::Decode(std::span<const int32_t> ids) const {
  std::string s;
  s.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    SM_CHECK(id >= 0 && id < vocab_size())
        << "token id " << id << " at position " << i << " is outside the byte tokenizer's "
        << vocab_size() << " ids";
    if (id < 256) s += static_cast<char>(id);
  }
  return s;
}

std::unique_ptr<Tokenizer> LoadTokenizer(const std::string& path) {
  if (path == "byte") return std::make_unique<ByteTokenizer>();
  if (path.size() > 9 && path.compare(path.size() - 9, 9, ".tiktoken") == 0)
    return TiktokenTokenizer::Load(path);
  return HfTokenizer::Load(path);
}

}  // namespace seqmesh
