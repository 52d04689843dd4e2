// tiktoken's byte-pair encodings (OpenAI's cl100k_base, o200k_base, p50k_base, r50k_base and any
// `.tiktoken` rank file): each line of the file is a token's bytes in base64 and its rank, which
// is also its id. Text is split by the encoding's regular expression (PCRE2, Unicode properties),
// and each piece's bytes are merged pair by pair, the lowest-ranked pair first, as tiktoken does.
// Special tokens (<|endoftext|>, ...) get the ids after the ranks; Encode treats their text as
// ordinary text, as tiktoken's encode_ordinary does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/piece_cache.h"
#include "runtime/tokenizer.h"

namespace seqmesh {

class Regex;

class TiktokenTokenizer : public Tokenizer {
 public:
  // The split pattern of a known encoding ("cl100k_base", "o200k_base", "p50k_base",
  // "r50k_base"), or "" for another name.
  static std::string PatternOf(const std::string& encoding);
  // Reads `path` (a .tiktoken rank file) and compiles `pattern` (a PCRE2 expression, or an
  // encoding name known to PatternOf; empty: the encoding named by the file's stem). Errors name
  // the file and line, or the pattern and the offset PCRE2 reports.
  static std::unique_ptr<TiktokenTokenizer> Load(const std::string& path,
                                                 const std::string& pattern = "");
  ~TiktokenTokenizer() override;

  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()) + 1; }
  int32_t bos() const override { return eot_; }  // GPT models start and end with <|endoftext|>
  int32_t eos() const override { return eot_; }
  int32_t pad() const override { return eot_; }
  void Encode(std::string_view text, std::vector<int32_t>& out) const override;
  std::string Decode(std::span<const int32_t> ids) const override;

 private:
  TiktokenTokenizer() = default;
  void EncodePiece(std::string_view piece, std::vector<int32_t>& out) const;
  void MergePiece(std::string_view piece, std::vector<int32_t>& out) const;

  StringMap<int32_t> ranks_;
  std::vector<std::string> tokens_;  // bytes by id
  int32_t eot_ = 0;                  // <|endoftext|>, the id after the last rank
  std::unique_ptr<Regex> regex_;
  PieceCache cache_;
};

}  // namespace seqmesh
