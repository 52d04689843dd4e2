// The parts of a Hugging Face tokenizer.json around its BPE model: the normalizers,
// pre-tokenizers, decoders and added tokens, and the post-processor's template, read from the
// file and applied as the `tokenizers` library does (the names in comments are the library's).
// Used by runtime/hf_tokenizer.cc only; docs/TOKENIZERS.md lists what is supported.
#pragma once

#include <unicode/normalizer2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/json.h"
#include "runtime/regex.h"

namespace seqmesh::hf {

// How a split's matches join the text around them (NormalizedString::split).
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A piece of text on its way to the model.
struct Piece {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the input (Metaspace's prepend_scheme "first")
};

struct NormOp {
  enum Kind { kUnicode, kPrepend, kReplace, kStrip } kind;
  const icu::Normalizer2* unicode = nullptr;
  std::string text, content;  // Prepend's text; Replace's literal (if any) and content
  std::unique_ptr<Regex> pattern;
  bool left = false, right = false;  // Strip

  void Apply(std::string& s) const;
};

struct PreOp {
  enum Kind { kByteLevel, kSplit, kMetaspace, kDigits } kind;
  bool add_prefix_space = false, use_regex = true;  // ByteLevel
  std::unique_ptr<Regex> pattern;                   // Split, Digits
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  std::string replacement;  // Metaspace
  enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
  bool split = true;

  void Apply(std::vector<Piece>& pieces) const;
};

struct DecodeOp {
  enum Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip } kind;
  std::string from, to;  // Replace; Metaspace's replacement in `from`
  bool prepend = true;   // Metaspace: the first token's replacement is dropped
  std::string strip;     // Strip's content
  size_t start = 0, stop = 0;

  void Apply(std::vector<std::string>& tokens) const;
};

struct AddedToken {
  std::string content, match;  // match: the content as it is looked for (normalized or not)
  int32_t id = 0;
  bool special = false, normalized = false, lstrip = false, rstrip = false, single_word = false;
};

// Leftmost-longest, non-overlapping matching of a set of added tokens (the library uses an
// Aho-Corasick automaton with that match kind; the sets are small, so candidates by first byte).
struct AddedMatcher {
  std::vector<const AddedToken*> by_byte[256];  // longest first
  bool empty = true;

  void Build(const std::vector<AddedToken>& tokens, bool normalized);

  struct Seg {
    size_t begin, end;
    const AddedToken* token;  // nullptr: ordinary text
  };
  // The library's AddedVocabulary::find_matches.
  void Find(std::string_view s, std::vector<Seg>& out) const;
};

// Each reader appends the components of one field of the file (a Sequence is flattened). `what`
// names the field in messages; a component seqmesh does not implement is refused by name.
void ReadNormalizer(const Json& j, const std::string& what, std::vector<NormOp>& ops);
void ReadPreTokenizer(const Json& j, const std::string& what, std::vector<PreOp>& ops);
void ReadDecoder(const Json& j, const std::string& what, std::vector<DecodeOp>& ops);
// The post-processor's single-sequence template: the special token ids before and after $A.
void ReadPostProcessor(const Json& j, const std::string& what, std::vector<int32_t>& prefix,
                       std::vector<int32_t>& suffix);

// Field helpers shared with the model's reader: "'file' field", and optional fields.
std::string Where(const std::string& file, const std::string& field);
bool OptBool(const Json& j, const std::string& key, bool fallback, const std::string& what);
std::string OptString(const Json& j, const std::string& key, const std::string& what);

}  // namespace seqmesh::hf
