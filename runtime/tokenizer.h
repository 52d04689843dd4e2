// Tokenizers. ByteTokenizer maps each byte to its own id (0..255) and adds BOS, EOS and PAD;
// a BPE tokenizer (Hugging Face tokenizer.json) implements the same interface later.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace seqmesh {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t bos() const = 0;
  virtual int32_t eos() const = 0;
  virtual int32_t pad() const = 0;
  // Appends the ids of `text` (no BOS/EOS) to `out`.
  virtual void Encode(std::string_view text, std::vector<int32_t>& out) const = 0;
  // Text of the ids; special ids are dropped, unknown ids are an error.
  virtual std::string Decode(std::span<const int32_t> ids) const = 0;
};

class ByteTokenizer : public Tokenizer {
 public:
  int64_t vocab_size() const override { return 259; }
  int32_t bos() const override { return 256; }
  int32_t eos() const override { return 257; }
  int32_t pad() const override { return 258; }
  void Encode(std::string_view text, std::vector<int32_t>& out) const override;
  std::string Decode(std::span<const int32_t> ids) const override;
};

}  // namespace seqmesh
