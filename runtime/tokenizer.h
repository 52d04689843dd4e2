// Tokenizers. ByteTokenizer maps each byte to its own id (0..255) and adds BOS, EOS and PAD;
// TiktokenTokenizer (runtime/tiktoken.h) reads tiktoken rank files and HfTokenizer
// (runtime/hf_tokenizer.h) Hugging Face tokenizer.json files. LoadTokenizer picks by the path.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace seqmesh {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t bos() const = 0;  // -1 where the tokenizer has none
  virtual int32_t eos() const = 0;
  virtual int32_t pad() const = 0;
  // The ids put before each document: the BOS that the tokenizer's own template adds (Llama's);
  // none where it adds none (GPT-2, Qwen, tiktoken, the byte tokenizer).
  virtual std::vector<int32_t> DocumentPrefix() const { return {}; }
  // The id of a token written as text (an added or special token such as "<|eot_id|>", or a
  // vocabulary entry), or -1.
  virtual int32_t TokenId(std::string_view token) const { return -1; }
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

// "byte": the byte tokenizer; a `.tiktoken` file: tiktoken (its split pattern named by the
// file's stem, e.g. cl100k_base); otherwise a tokenizer.json or a directory holding one.
std::unique_ptr<Tokenizer> LoadTokenizer(const std::string& path);

}  // namespace seqmesh
