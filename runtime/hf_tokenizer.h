// Hugging Face tokenizers (`tokenizer.json`): BPE models with the pipeline that the GPT-2,
// Llama 3, Qwen (byte-level BPE with regex splits) and Llama 2, Mistral, TinyLlama (metaspace
// BPE with byte fallback) families use. Ids equal the `tokenizers` library's, which is the test's
// oracle (tests/runtime/hf_tokenizer_ref_test.sh). The pipeline, in the library's order:
//
//   1. added tokens are cut out of the raw text (those with normalized = false), leftmost and
//      longest first, honouring lstrip, rstrip and single_word;
//   2. each remaining segment is normalized (NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip,
//      Sequence), and added tokens with normalized = true are cut out of it;
//   3. the pre-tokenizer splits segments into pieces (ByteLevel, Split, Metaspace, Digits,
//      Sequence);
//   4. each piece is merged by the BPE model: its characters (or their <0xNN> byte tokens with
//      byte_fallback, or unk_token) merge pair by pair, the lowest-ranked merge first and the
//      leftmost on a tie; ignore_merges takes a piece that is itself a token whole.
//
// Decoding runs the decoder (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)
// over the tokens' strings; special tokens are dropped. Every other component type, and options
// such as BPE dropout, are refused by name when the file is loaded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer.h"

namespace seqmesh {

class HfTokenizer : public Tokenizer {
 public:
  // Reads `path` (a tokenizer.json, or a directory holding one). BOS, EOS and PAD come from a
  // tokenizer_config.json beside it when there is one (bos_token, eos_token, pad_token), else
  // from the post-processor's template (BOS) and the usual end-of-text token names (EOS). Errors
  // name the file and the field.
  static std::unique_ptr<HfTokenizer> Load(const std::string& path);
  ~HfTokenizer() override;

  int64_t vocab_size() const override;  // the largest id + 1, added tokens included
  int32_t bos() const override;         // -1: the tokenizer has none (Qwen, GPT-2 use none)
  int32_t eos() const override;
  int32_t pad() const override;
  std::vector<int32_t> DocumentPrefix() const override { return template_prefix(); }
  void Encode(std::string_view text, std::vector<int32_t>& out) const override;
  // The text of `ids` as the library's decode(ids, skip_special_tokens = true) gives it.
  std::string Decode(std::span<const int32_t> ids) const override;

  // The id of a token (model vocabulary or added token), or -1.
  int32_t TokenId(std::string_view token) const override;
  // Whether `id` is a special added token (decode drops it).
  bool IsSpecial(int32_t id) const;
  // The tokens the post-processor's single-sequence template puts before and after the text
  // (e.g. <s> for Llama 2, <|begin_of_text|> for Llama 3; none for GPT-2 and Qwen).
  const std::vector<int32_t>& template_prefix() const;
  const std::vector<int32_t>& template_suffix() const;

  struct Impl;

 private:
  explicit HfTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqmesh
