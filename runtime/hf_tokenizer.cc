#include "runtime/hf_tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "runtime/check.h"
#include "runtime/json.h"
#include "runtime/regex.h"

namespace seqmesh {
namespace {

// ---- UTF-8 ----

// The code point at s[i] (valid UTF-8 assumed) and its length in `len`.
uint32_t CodePointAt(std::string_view s, size_t i, size_t* len) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return *len = 1, c;
  if (c < 0xE0 && i + 1 < s.size()) return *len = 2, ((c & 0x1F) << 6) | (b(1) & 0x3F);
  if (c < 0xF0 && i + 2 < s.size())
    return *len = 3, ((c & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  if (i + 3 < s.size())
    return *len = 4,
           ((c & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  return *len = 1, 0xFFFD;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Bytes to text as Rust's String::from_utf8_lossy does (the library's decoders use it): each
// maximal ill-formed subsequence becomes one U+FFFD.
std::string Utf8Lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    int need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    size_t k = 1;
    bool ok = need > 0;
    for (; ok && k <= static_cast<size_t>(need); ++k) {
      if (i + k >= s.size()) {
        ok = false;
        break;
      }
      const auto d = static_cast<unsigned char>(s[i + k]);
      const bool in = k == 1 ? (d >= lo && d <= hi) : (d >= 0x80 && d <= 0xBF);
      if (!in) ok = false;
      if (!ok) break;
    }
    if (ok) {
      out.append(s.substr(i, need + 1));
      i += need + 1;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max<size_t>(k, 1);
    }
  }
  return out;
}

// Rust's char::is_whitespace (the White_Space property).
bool IsWhitespace(uint32_t cp) { return u_isUWhiteSpace(static_cast<UChar32>(cp)); }

// Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation, join controls.
bool IsWordChar(uint32_t cp) {
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL))
    return true;
  const int8_t t = u_charType(c);
  return t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK ||
         t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION;
}

uint32_t LastCodePoint(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  size_t len = 0;
  return CodePointAt(s, i, &len);
}

bool IsAscii(std::string_view s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

// ---- GPT-2's byte-level alphabet: each byte as a printable character ----

struct ByteLevelAlphabet {
  std::string of_byte[256];
  std::unordered_map<uint32_t, uint8_t> byte_of;
  ByteLevelAlphabet() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? b : 256 + n++;
      AppendUtf8(of_byte[b], cp);
      byte_of[cp] = static_cast<uint8_t>(b);
    }
  }
};
const ByteLevelAlphabet& Alphabet() {
  static const ByteLevelAlphabet a;
  return a;
}

// The library's ByteLevel regex (pre_tokenizers/byte_level.rs).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string EscapeRegex(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

struct Hash {  // lookups by string_view, without a copy
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, Hash, std::equal_to<>>;

std::string Where(const std::string& file, const std::string& field) {
  return "'" + file + "' " + field;
}

// A `pattern` field: {"String": s} (a literal) or {"Regex": r}.
std::unique_ptr<Regex> ReadPattern(const Json& j, const std::string& what, std::string* literal) {
  if (const Json* s = j.Find("String")) {
    if (literal) *literal = s->AsString(what + ".String");
    return std::make_unique<Regex>(EscapeRegex(s->AsString(what + ".String")), what);
  }
  const Json* r = j.Find("Regex");
  SM_CHECK(r != nullptr) << what << " is neither {\"String\": ...} nor {\"Regex\": ...}";
  return std::make_unique<Regex>(r->AsString(what + ".Regex"), what);
}

// A single-character string field (Metaspace's replacement).
std::string ReadChar(const Json& j, const std::string& key, const std::string& what) {
  const Json* f = j.Find(key);
  if (!f) return "\xE2\x96\x81";  // ▁, the library's default
  const std::string& s = f->AsString(what + "." + key);
  size_t len = 0;
  SM_CHECK(!s.empty() && (CodePointAt(s, 0, &len), len == s.size()))
      << what << "." << key << " must be one character, not '" << s << "'";
  return s;
}

bool OptBool(const Json& j, const std::string& key, bool fallback, const std::string& what) {
  const Json* f = j.Find(key);
  return f && !f->is_null() ? f->AsBool(what + "." + key) : fallback;
}

std::string OptString(const Json& j, const std::string& key, const std::string& what) {
  const Json* f = j.Find(key);
  return f && !f->is_null() ? f->AsString(what + "." + key) : "";
}

// ---- splitting, as NormalizedString::split does ----

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior ReadBehavior(const Json& j, const std::string& what) {
  const std::string b = j.Require("behavior", what).AsString(what + ".behavior");
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  SM_CHECK(false) << what << ".behavior '" << b
                  << "' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                     "Contiguous";
  return Behavior::kIsolated;
}

struct Piece {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the input (Metaspace's prepend_scheme "first")
};

// Splits `p` at `re`'s matches with the given behavior; empty pieces are dropped.
void SplitPiece(const Piece& p, const Regex& re, Behavior behavior, bool invert,
                std::vector<Piece>& out) {
  thread_local std::vector<std::pair<size_t, size_t>> found;
  found.clear();
  re.Matches(p.text, found);
  struct Seg {
    size_t begin, end;
    bool match;
  };
  std::vector<Seg> segs;
  size_t at = 0;
  for (const auto& [b, e] : found) {
    if (b > at) segs.push_back({at, b, invert});
    segs.push_back({b, e, !invert});
    at = e;
  }
  if (at < p.text.size() || segs.empty()) segs.push_back({at, p.text.size(), invert});
  std::vector<Seg> merged;
  switch (behavior) {
    case Behavior::kIsolated:
      merged = segs;
      break;
    case Behavior::kRemoved:
      for (const Seg& s : segs)
        if (!s.match) merged.push_back(s);
      break;
    case Behavior::kContiguous:
      for (const Seg& s : segs) {
        if (!merged.empty() && s.match && merged.back().match) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
      }
      break;
    case Behavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Seg& s : segs) {
        if (s.match && !previous_match && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous_match = false;
      for (size_t k = segs.size(); k-- > 0;) {
        const Seg& s = segs[k];
        if (s.match && !previous_match && !merged.empty()) {
          merged.back().begin = s.begin;
        } else {
          merged.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
  }
  for (const Seg& s : merged) {
    if (s.end == s.begin) continue;
    out.push_back({p.text.substr(s.begin, s.end - s.begin), p.at_start && s.begin == 0});
  }
}

const Regex& Gpt2Regex() {
  static const Regex re(kGpt2Pattern, "the ByteLevel pre-tokenizer's pattern");
  return re;
}

}  // namespace

// ---- the pipeline's components ----

struct NormOp {
  enum Kind { kUnicode, kPrepend, kReplace, kStrip } kind;
  const icu::Normalizer2* unicode = nullptr;
  std::string text, content;  // Prepend's text; Replace's literal (if any) and content
  std::unique_ptr<Regex> pattern;
  bool left = false, right = false;  // Strip

  void Apply(std::string& s) const {
    switch (kind) {
      case kUnicode: {
        if (IsAscii(s)) return;  // every form leaves ASCII as it is
        UErrorCode status = U_ZERO_ERROR;
        const icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
        const icu::UnicodeString n = unicode->normalize(u, status);
        SM_CHECK(U_SUCCESS(status)) << "Unicode normalization failed: " << u_errorName(status);
        s.clear();
        n.toUTF8String(s);
        return;
      }
      case kPrepend:
        if (!s.empty()) s.insert(0, text);
        return;
      case kReplace: {
        std::string out;
        if (!text.empty()) {  // a literal: the common case (" " to "▁")
          size_t at = 0;
          for (size_t k; (k = s.find(text, at)) != std::string::npos; at = k + text.size())
            out.append(s, at, k - at).append(content);
          if (at == 0) return;
          out.append(s, at);
        } else {
          thread_local std::vector<std::pair<size_t, size_t>> found;
          found.clear();
          pattern->Matches(s, found);
          if (found.empty()) return;
          size_t at = 0;
          for (const auto& [b, e] : found) out.append(s, at, b - at).append(content), at = e;
          out.append(s, at);
        }
        s = std::move(out);
        return;
      }
      case kStrip: {
        size_t b = 0, e = s.size(), len = 0;
        while (left && b < e && IsWhitespace(CodePointAt(s, b, &len))) b += len;
        while (right && e > b && IsWhitespace(LastCodePoint(std::string_view(s).substr(b, e - b))))
          do --e;
          while (e > b && (static_cast<unsigned char>(s[e]) & 0xC0) == 0x80);
        s = s.substr(b, e - b);
        return;
      }
    }
  }
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

  void Apply(std::vector<Piece>& pieces) const {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (Piece& p : pieces) {
      switch (kind) {
        case kByteLevel: {
          if (add_prefix_space && !p.text.empty() && p.text[0] != ' ') p.text.insert(0, " ");
          const size_t first = out.size();
          if (use_regex) {
            SplitPiece(p, Gpt2Regex(), Behavior::kIsolated, false, out);
          } else if (!p.text.empty()) {
            out.push_back(std::move(p));
          }
          const ByteLevelAlphabet& a = Alphabet();
          for (size_t k = first; k < out.size(); ++k) {
            std::string mapped;
            mapped.reserve(out[k].text.size() * 2);
            for (const char c : out[k].text) mapped += a.of_byte[static_cast<unsigned char>(c)];
            out[k].text = std::move(mapped);
          }
          break;
        }
        case kSplit:
        case kDigits:
          SplitPiece(p, *pattern, behavior, invert, out);
          break;
        case kMetaspace: {
          std::string s;
          size_t at = 0;
          for (size_t k; (k = p.text.find(' ', at)) != std::string::npos; at = k + 1)
            s.append(p.text, at, k - at).append(replacement);
          s.append(p.text, at);
          const bool starts = s.compare(0, replacement.size(), replacement) == 0;
          if (!starts &&
              (prepend == Prepend::kAlways || (prepend == Prepend::kFirst && p.at_start)))
            s.insert(0, replacement);
          Piece q{std::move(s), p.at_start};
          if (split) {
            SplitPiece(q, *pattern, Behavior::kMergedWithNext, false, out);
          } else if (!q.text.empty()) {
            out.push_back(std::move(q));
          }
          break;
        }
      }
    }
    pieces = std::move(out);
  }
};

struct DecodeOp {
  enum Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip } kind;
  std::string from, to;  // Replace; Metaspace's replacement in `from`
  bool prepend = true;   // Metaspace: the first token's replacement is dropped
  std::string strip;     // Strip's content
  size_t start = 0, stop = 0;

  void Apply(std::vector<std::string>& tokens) const {
    switch (kind) {
      case kByteLevel: {
        const ByteLevelAlphabet& a = Alphabet();
        std::string bytes;
        for (const std::string& t : tokens) {
          const size_t mark = bytes.size();
          size_t len = 0;
          for (size_t i = 0; i < t.size(); i += len) {
            const auto it = a.byte_of.find(CodePointAt(t, i, &len));
            if (it == a.byte_of.end()) {  // not byte-level text: the token's own bytes
              bytes.resize(mark);
              bytes += t;
              break;
            }
            bytes += static_cast<char>(it->second);
          }
        }
        tokens.assign(1, Utf8Lossy(bytes));
        return;
      }
      case kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          std::string s;
          size_t at = 0;
          for (size_t k; (k = tokens[i].find(from, at)) != std::string::npos; at = k + from.size())
            s.append(tokens[i], at, k - at).append(i == 0 && prepend ? "" : " ");
          s.append(tokens[i], at);
          tokens[i] = std::move(s);
        }
        return;
      case kReplace:
        for (std::string& t : tokens) {
          std::string s;
          size_t at = 0;
          for (size_t k; (k = t.find(from, at)) != std::string::npos; at = k + from.size())
            s.append(t, at, k - at).append(to);
          s.append(t, at);
          t = std::move(s);
        }
        return;
      case kByteFallback: {
        std::vector<std::string> out;
        std::string bytes;
        size_t count = 0;
        auto flush = [&] {
          if (count == 0) return;
          if (Utf8Lossy(bytes) == bytes) {
            out.push_back(bytes);
          } else {
            for (size_t k = 0; k < count; ++k) out.push_back("\xEF\xBF\xBD");
          }
          bytes.clear();
          count = 0;
        };
        for (std::string& t : tokens) {
          unsigned value = 0;
          char tail = 0;
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
              std::sscanf(t.c_str() + 3, "%2X%c", &value, &tail) == 2 && tail == '>' &&
              std::isxdigit(static_cast<unsigned char>(t[3])) &&
              std::isxdigit(static_cast<unsigned char>(t[4]))) {
            bytes += static_cast<char>(value);
            ++count;
            continue;
          }
          flush();
          out.push_back(std::move(t));
        }
        flush();
        tokens = std::move(out);
        return;
      }
      case kFuse: {
        std::string s;
        for (const std::string& t : tokens) s += t;
        tokens.assign(1, std::move(s));
        return;
      }
      case kStrip:
        for (std::string& t : tokens) {
          size_t b = 0, e = t.size();
          for (size_t k = 0; k < start && t.compare(b, strip.size(), strip) == 0 && b < e; ++k)
            b += strip.size();
          for (size_t k = 0; k < stop && e >= b + strip.size() &&
                             t.compare(e - strip.size(), strip.size(), strip) == 0;
               ++k)
            e -= strip.size();
          t = t.substr(b, e - b);
        }
        return;
    }
  }
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

  void Build(const std::vector<AddedToken>& tokens, bool normalized) {
    for (const AddedToken& t : tokens) {
      if (t.normalized != normalized || t.match.empty()) continue;
      by_byte[static_cast<unsigned char>(t.match[0])].push_back(&t);
      empty = false;
    }
    for (auto& list : by_byte)
      std::stable_sort(list.begin(), list.end(), [](const AddedToken* a, const AddedToken* b) {
        return a->match.size() > b->match.size();
      });
  }

  struct Seg {
    size_t begin, end;
    const AddedToken* token;  // nullptr: ordinary text
  };
  // The library's AddedVocabulary::find_matches.
  void Find(std::string_view s, std::vector<Seg>& out) const {
    size_t start_offset = 0, i = 0;
    while (!empty && i < s.size()) {
      const AddedToken* hit = nullptr;
      for (const AddedToken* t : by_byte[static_cast<unsigned char>(s[i])])
        if (s.compare(i, t->match.size(), t->match) == 0) {
          hit = t;
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      size_t start = i, stop = i + hit->match.size();
      i = stop;
      if (hit->single_word) {
        const bool start_space = start == 0 || !IsWordChar(LastCodePoint(s.substr(0, start)));
        size_t len = 0;
        const bool stop_space = stop == s.size() || !IsWordChar(CodePointAt(s, stop, &len));
        if (!start_space || !stop_space) continue;
      }
      if (hit->lstrip) {
        size_t b = start;
        while (b > 0) {
          size_t k = b - 1;
          while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
          size_t len = 0;
          if (!IsWhitespace(CodePointAt(s, k, &len))) break;
          b = k;
        }
        start = std::max(b, start_offset);
      }
      if (hit->rstrip) {
        size_t len = 0;
        while (stop < s.size() && IsWhitespace(CodePointAt(s, stop, &len))) stop += len;
      }
      if (start_offset < start) out.push_back({start_offset, start, nullptr});
      out.push_back({start, stop, hit});
      start_offset = stop;
    }
    if (start_offset < s.size() || s.empty()) out.push_back({start_offset, s.size(), nullptr});
  }
};

struct HfTokenizer::Impl {
  std::string file;
  std::vector<NormOp> normalizer;
  std::vector<PreOp> pre_tokenizer;
  std::vector<DecodeOp> decoder;
  bool has_decoder = false;

  // The BPE model.
  Vocab vocab;                                                       // model tokens
  std::vector<std::string> id_to_token;                              // model and added tokens by id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) -> (rank, id)
  int32_t unk = -1;
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::string prefix, suffix;  // continuing_subword_prefix, end_of_word_suffix
  int32_t byte_token[256];     // <0xNN>, or -1

  std::vector<AddedToken> added;
  std::unordered_map<int32_t, const AddedToken*> added_by_id;
  AddedMatcher raw_matcher, normalized_matcher;
  std::vector<int32_t> prefix_ids, suffix_ids;
  int32_t bos = -1, eos = -1, pad = -1;

  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void Normalize(std::string& s) const {
    for (const NormOp& op : normalizer) op.Apply(s);
  }

  void MergeWord(std::string_view w, std::vector<int32_t>& out) const;
  void Model(std::string_view piece, std::vector<int32_t>& out) const;
  void EncodeSegment(std::string text, bool at_start, std::vector<int32_t>& out) const;
};

// The library's BPE::merge_word and Word::merge_all: characters (or their byte tokens, or unk),
// then a queue of merges ordered by rank and position, stale entries skipped.
void HfTokenizer::Impl::MergeWord(std::string_view w, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int prev, next;
    size_t len;
  };
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  auto add = [&](int32_t id, size_t len) {
    const int n = static_cast<int>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, len});
  };
  int32_t unk_id = -1;  // an unknown character not yet added (fuse_unk grows it)
  size_t unk_len = 0;
  std::string s;
  size_t len = 0;
  for (size_t i = 0; i < w.size(); i += len) {
    CodePointAt(w, i, &len);
    s.assign(w.substr(i, len));
    if (i > 0 && !prefix.empty()) s.insert(0, prefix);
    if (i + len >= w.size() && !suffix.empty()) s += suffix;
    if (const auto it = vocab.find(s); it != vocab.end()) {
      if (unk_id >= 0) add(unk_id, unk_len), unk_id = -1;
      add(it->second, len);
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (const char c : s) all = all && byte_token[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        // (the library adds these without flushing a pending unk first)
        for (const char c : s) add(byte_token[static_cast<unsigned char>(c)], 1);
        continue;
      }
    }
    if (unk >= 0) {
      if (unk_id >= 0 && fuse_unk) {
        unk_len += len;
      } else {
        if (unk_id >= 0) add(unk_id, unk_len);
        unk_id = unk;
        unk_len = len;
      }
    }
  }
  if (unk_id >= 0) add(unk_id, unk_len);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Merge {
    int pos;
    int32_t rank, id;
    bool operator<(const Merge& o) const {  // the queue's top: lowest rank, then leftmost
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  thread_local std::vector<Merge> heap_storage;
  heap_storage.clear();
  std::priority_queue<Merge> queue(std::less<Merge>(), std::move(heap_storage));
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    if (const auto it = merges.find(Key(symbols[i].id, symbols[i + 1].id)); it != merges.end())
      queue.push({static_cast<int>(i), it->second.first, it->second.second});
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const Symbol right = symbols[cur.next];
    const auto it = merges.find(Key(cur.id, right.id));
    if (it == merges.end() || it->second.second != top.id) continue;
    symbols[cur.next].len = 0;
    cur.id = top.id;
    cur.len += right.len;
    cur.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0)
      if (const auto m = merges.find(Key(symbols[cur.prev].id, cur.id)); m != merges.end())
        queue.push({cur.prev, m->second.first, m->second.second});
    if (cur.next >= 0)
      if (const auto m = merges.find(Key(cur.id, symbols[cur.next].id)); m != merges.end())
        queue.push({top.pos, m->second.first, m->second.second});
  }
  for (const Symbol& sym : symbols)
    if (sym.len > 0) out.push_back(sym.id);
}

void HfTokenizer::Impl::Model(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges)
    if (const auto it = vocab.find(piece); it != vocab.end()) return out.push_back(it->second);
  // Pieces repeat (words, indentation): each thread remembers the ids of the short ones it
  // merged, as the library's cache does (pieces under 256 bytes), up to 64K pieces.
  struct Cache {
    const Impl* owner = nullptr;
    std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> ids;
  };
  thread_local Cache cache;
  if (piece.size() >= 256) return MergeWord(piece, out);
  if (cache.owner != this || cache.ids.size() > (1 << 16)) {
    cache.ids.clear();
    cache.owner = this;
  }
  if (const auto it = cache.ids.find(piece); it != cache.ids.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t first = out.size();
  MergeWord(piece, out);
  cache.ids.emplace(std::string(piece), std::vector<int32_t>(out.begin() + first, out.end()));
}

void HfTokenizer::Impl::EncodeSegment(std::string text, bool at_start,
                                      std::vector<int32_t>& out) const {
  Normalize(text);
  std::vector<AddedMatcher::Seg> mine;
  normalized_matcher.Find(text, mine);
  for (const AddedMatcher::Seg& seg : mine) {
    if (seg.token) {
      out.push_back(seg.token->id);
      continue;
    }
    std::vector<Piece> pieces{
        {text.substr(seg.begin, seg.end - seg.begin), at_start && seg.begin == 0}};
    for (const PreOp& op : pre_tokenizer) op.Apply(pieces);
    for (const Piece& p : pieces) Model(p.text, out);
  }
}

// ---- loading ----

namespace {

const icu::Normalizer2* UnicodeForm(const std::string& type) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  if (type == "NFC") n = icu::Normalizer2::getNFCInstance(status);
  if (type == "NFD") n = icu::Normalizer2::getNFDInstance(status);
  if (type == "NFKC") n = icu::Normalizer2::getNFKCInstance(status);
  if (type == "NFKD") n = icu::Normalizer2::getNFKDInstance(status);
  SM_CHECK(n && U_SUCCESS(status))
      << "ICU has no " << type << " normalizer: " << u_errorName(status);
  return n;
}

constexpr const char* kFix =
    ": seqmesh supports the components of the GPT-2, Llama 3, Qwen, Llama 2, Mistral and "
    "TinyLlama tokenizers (docs/TOKENIZERS.md lists them)";

void ReadNormalizer(const Json& j, const std::string& what, std::vector<NormOp>& ops) {
  if (j.is_null()) return;
  const std::string type = j.Require("type", what).AsString(what + ".type");
  if (type == "Sequence") {
    const auto& items = j.Require("normalizers", what).AsArray(what + ".normalizers");
    for (size_t i = 0; i < items.size(); ++i)
      ReadNormalizer(items[i], what + ".normalizers[" + std::to_string(i) + "]", ops);
    return;
  }
  NormOp op;
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    op.kind = NormOp::kUnicode;
    op.unicode = UnicodeForm(type);
  } else if (type == "Prepend") {
    op.kind = NormOp::kPrepend;
    op.text = j.Require("prepend", what).AsString(what + ".prepend");
  } else if (type == "Replace") {
    op.kind = NormOp::kReplace;
    op.pattern = ReadPattern(j.Require("pattern", what), what + ".pattern", &op.text);
    op.content = j.Require("content", what).AsString(what + ".content");
  } else if (type == "Strip") {
    op.kind = NormOp::kStrip;
    op.left = OptBool(j, "strip_left", false, what);
    op.right = OptBool(j, "strip_right", false, what);
  } else {
    SM_CHECK(false) << what << ": the normalizer '" << type << "' is not supported" << kFix;
  }
  ops.push_back(std::move(op));
}

void ReadPreTokenizer(const Json& j, const std::string& what, std::vector<PreOp>& ops) {
  if (j.is_null()) return;
  const std::string type = j.Require("type", what).AsString(what + ".type");
  if (type == "Sequence") {
    const auto& items = j.Require("pretokenizers", what).AsArray(what + ".pretokenizers");
    for (size_t i = 0; i < items.size(); ++i)
      ReadPreTokenizer(items[i], what + ".pretokenizers[" + std::to_string(i) + "]", ops);
    return;
  }
  PreOp op;
  if (type == "ByteLevel") {
    op.kind = PreOp::kByteLevel;
    op.add_prefix_space = OptBool(j, "add_prefix_space", true, what);
    op.use_regex = OptBool(j, "use_regex", true, what);
  } else if (type == "Split") {
    op.kind = PreOp::kSplit;
    op.pattern = ReadPattern(j.Require("pattern", what), what + ".pattern", nullptr);
    op.behavior = ReadBehavior(j, what);
    op.invert = OptBool(j, "invert", false, what);
  } else if (type == "Metaspace") {
    op.kind = PreOp::kMetaspace;
    op.replacement = ReadChar(j, "replacement", what);
    const std::string scheme = OptString(j, "prepend_scheme", what);
    if (scheme.empty()) {  // files from before prepend_scheme: add_prefix_space
      op.prepend = OptBool(j, "add_prefix_space", true, what) ? PreOp::Prepend::kAlways
                                                              : PreOp::Prepend::kNever;
    } else if (scheme == "always" || scheme == "first" || scheme == "never") {
      op.prepend = scheme == "always"  ? PreOp::Prepend::kAlways
                   : scheme == "first" ? PreOp::Prepend::kFirst
                                       : PreOp::Prepend::kNever;
    } else {
      SM_CHECK(false) << what << ".prepend_scheme '" << scheme
                      << "' is not one of always, first, never";
    }
    op.split = OptBool(j, "split", true, what);
    op.pattern = std::make_unique<Regex>(EscapeRegex(op.replacement), what);
  } else if (type == "Digits") {
    op.kind = PreOp::kDigits;
    op.pattern = std::make_unique<Regex>(
        OptBool(j, "individual_digits", false, what) ? R"(\p{N})" : R"(\p{N}+)", what);
  } else {
    SM_CHECK(false) << what << ": the pre-tokenizer '" << type << "' is not supported" << kFix;
  }
  ops.push_back(std::move(op));
}

void ReadDecoder(const Json& j, const std::string& what, std::vector<DecodeOp>& ops) {
  const std::string type = j.Require("type", what).AsString(what + ".type");
  if (type == "Sequence") {
    const auto& items = j.Require("decoders", what).AsArray(what + ".decoders");
    for (size_t i = 0; i < items.size(); ++i)
      ReadDecoder(items[i], what + ".decoders[" + std::to_string(i) + "]", ops);
    return;
  }
  DecodeOp op;
  if (type == "ByteLevel") {
    op.kind = DecodeOp::kByteLevel;
  } else if (type == "Metaspace") {
    op.kind = DecodeOp::kMetaspace;
    op.from = ReadChar(j, "replacement", what);
    const std::string scheme = OptString(j, "prepend_scheme", what);
    op.prepend = scheme.empty() ? OptBool(j, "add_prefix_space", true, what) : scheme != "never";
  } else if (type == "Replace") {
    op.kind = DecodeOp::kReplace;
    const Json& p = j.Require("pattern", what);
    const Json* s = p.Find("String");
    SM_CHECK(s != nullptr) << what << ": a Replace decoder with a Regex pattern is not supported"
                           << kFix;
    op.from = s->AsString(what + ".pattern.String");
    op.to = j.Require("content", what).AsString(what + ".content");
    SM_CHECK(!op.from.empty()) << what << ".pattern.String is empty";
  } else if (type == "ByteFallback") {
    op.kind = DecodeOp::kByteFallback;
  } else if (type == "Fuse") {
    op.kind = DecodeOp::kFuse;
  } else if (type == "Strip") {
    op.kind = DecodeOp::kStrip;
    op.strip = j.Require("content", what).AsString(what + ".content");
    op.start = j.Require("start", what).AsInt(what + ".start");
    op.stop = j.Require("stop", what).AsInt(what + ".stop");
    SM_CHECK(!op.strip.empty()) << what << ".content is empty";
  } else {
    SM_CHECK(false) << what << ": the decoder '" << type << "' is not supported" << kFix;
  }
  ops.push_back(std::move(op));
}

// The post-processor's single-sequence template: the special tokens around $A.
void ReadPostProcessor(const Json& j, const std::string& what, HfTokenizer::Impl& t) {
  if (j.is_null()) return;
  const std::string type = j.Require("type", what).AsString(what + ".type");
  if (type == "Sequence") {
    const auto& items = j.Require("processors", what).AsArray(what + ".processors");
    for (size_t i = 0; i < items.size(); ++i)
      ReadPostProcessor(items[i], what + ".processors[" + std::to_string(i) + "]", t);
    return;
  }
  if (type == "ByteLevel") return;  // offsets only
  SM_CHECK(type == "TemplateProcessing")
      << what << ": the post-processor '" << type << "' is not supported" << kFix;
  const Json& specials = j.Require("special_tokens", what);
  bool after = false;
  const auto& single = j.Require("single", what).AsArray(what + ".single");
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string w = what + ".single[" + std::to_string(i) + "]";
    if (single[i].Find("Sequence")) {
      after = true;
      continue;
    }
    const std::string name =
        single[i].Require("SpecialToken", w).Require("id", w).AsString(w + ".SpecialToken.id");
    const Json* spec = specials.Find(name);
    SM_CHECK(spec != nullptr) << w << ": '" << name << "' is not in special_tokens";
    for (const Json& id : spec->Require("ids", w).AsArray(w + ".ids"))
      (after ? t.suffix_ids : t.prefix_ids).push_back(static_cast<int32_t>(id.AsInt(w)));
  }
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SM_CHECK(in) << "cannot read '" << path << "'";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// tokenizer_config.json's token fields: a string, or {"content": ...}, or null.
std::string ConfigToken(const Json& config, const std::string& key, const std::string& what) {
  const Json* f = config.Find(key);
  if (!f || f->is_null()) return "";
  if (f->is_string()) return f->AsString(what + "." + key);
  return f->Require("content", what + "." + key).AsString(what + "." + key + ".content");
}

}  // namespace

HfTokenizer::HfTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HfTokenizer::~HfTokenizer() = default;

std::unique_ptr<HfTokenizer> HfTokenizer::Load(const std::string& path_in) {
  std::string path = path_in;
  if (std::filesystem::is_directory(path)) path = (std::filesystem::path(path) / "tokenizer.json");
  auto t = std::make_unique<Impl>();
  t->file = path;
  const Json root = Json::Parse(ReadText(path), path);
  SM_CHECK(root.is_object()) << "'" << path << "' is not a JSON object (a tokenizer.json)";
  const Json* trunc = root.Find("truncation");
  SM_CHECK(!trunc || trunc->is_null())
      << Where(path, "truncation") << " is set: seqmesh cuts documents itself "
      << "(prep --max-length); remove it from the file";

  const Json& model = root.Require("model", "'" + path + "'");
  const std::string mw = Where(path, "model");
  const std::string type = OptString(model, "type", mw);
  SM_CHECK(type == "BPE" || (type.empty() && model.Find("merges")))
      << mw << ": the model '" << type << "' is not supported (only BPE models are)";
  const Json* dropout = model.Find("dropout");
  SM_CHECK(!dropout || dropout->is_null() || dropout->AsDouble(mw + ".dropout") == 0)
      << mw << ".dropout is set: BPE dropout is a training-time augmentation seqmesh does not "
      << "apply; set it to null";
  t->byte_fallback = OptBool(model, "byte_fallback", false, mw);
  t->fuse_unk = OptBool(model, "fuse_unk", false, mw);
  t->ignore_merges = OptBool(model, "ignore_merges", false, mw);
  t->prefix = OptString(model, "continuing_subword_prefix", mw);
  t->suffix = OptString(model, "end_of_word_suffix", mw);
  int32_t max_id = -1;
  for (const auto& [token, id_json] : model.Require("vocab", mw).AsObject(mw + ".vocab")) {
    const int64_t id = id_json.AsInt(mw + ".vocab[\"" + token + "\"]");
    SM_CHECK(id >= 0 && id < (1 << 30)) << mw << ".vocab: '" << token << "' has the id " << id;
    t->vocab.emplace(token, static_cast<int32_t>(id));
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  t->id_to_token.resize(max_id + 1);
  for (const auto& [token, id] : t->vocab) t->id_to_token[id] = token;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const auto it = t->vocab.find(std::string_view(name));
    t->byte_token[b] = it == t->vocab.end() ? -1 : it->second;
  }
  if (const std::string unk = OptString(model, "unk_token", mw); !unk.empty()) {
    const auto it = t->vocab.find(unk);
    SM_CHECK(it != t->vocab.end()) << mw << ".unk_token '" << unk << "' is not in the vocab";
    t->unk = it->second;
  }
  const auto& merges = model.Require("merges", mw).AsArray(mw + ".merges");
  t->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string w = mw + ".merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (merges[i].is_string()) {  // "a b"
      const std::string& m = merges[i].AsString(w);
      const size_t space = m.find(' ');
      SM_CHECK(space != std::string::npos && m.find(' ', space + 1) == std::string::npos)
          << w << " '" << m << "' is not two tokens separated by one space";
      a = m.substr(0, space);
      b = m.substr(space + 1);
    } else {  // ["a", "b"]
      const auto& pair = merges[i].AsArray(w);
      SM_CHECK(pair.size() == 2) << w << " is not a pair of tokens";
      a = pair[0].AsString(w);
      b = pair[1].AsString(w);
    }
    const auto ia = t->vocab.find(a), ib = t->vocab.find(b);
    SM_CHECK(ia != t->vocab.end() && ib != t->vocab.end())
        << w << ": '" << (ia == t->vocab.end() ? a : b) << "' is not in the vocab";
    SM_CHECK(b.compare(0, t->prefix.size(), t->prefix) == 0 || t->prefix.empty())
        << w << ": '" << b << "' lacks the continuing_subword_prefix";
    const std::string joined = a + b.substr(t->prefix.size());
    const auto ij = t->vocab.find(joined);
    SM_CHECK(ij != t->vocab.end())
        << w << ": the merged token '" << joined << "' is not in the vocab";
    t->merges.emplace(Impl::Key(ia->second, ib->second),
                      std::make_pair(static_cast<int32_t>(i), ij->second));
  }

  if (const Json* n = root.Find("normalizer"))
    ReadNormalizer(*n, Where(path, "normalizer"), t->normalizer);
  if (const Json* p = root.Find("pre_tokenizer"))
    ReadPreTokenizer(*p, Where(path, "pre_tokenizer"), t->pre_tokenizer);
  if (const Json* d = root.Find("decoder"); d && !d->is_null()) {
    ReadDecoder(*d, Where(path, "decoder"), t->decoder);
    t->has_decoder = true;
  }
  if (const Json* a = root.Find("added_tokens")) {
    const auto& items = a->AsArray(Where(path, "added_tokens"));
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string w = Where(path, "added_tokens[" + std::to_string(i) + "]");
      AddedToken tok;
      tok.id = static_cast<int32_t>(items[i].Require("id", w).AsInt(w + ".id"));
      SM_CHECK(tok.id >= 0 && tok.id < (1 << 30)) << w << ".id " << tok.id << " is out of range";
      tok.content = items[i].Require("content", w).AsString(w + ".content");
      tok.special = OptBool(items[i], "special", false, w);
      tok.normalized = OptBool(items[i], "normalized", !tok.special, w);
      tok.lstrip = OptBool(items[i], "lstrip", false, w);
      tok.rstrip = OptBool(items[i], "rstrip", false, w);
      tok.single_word = OptBool(items[i], "single_word", false, w);
      tok.match = tok.content;
      if (tok.normalized) t->Normalize(tok.match);
      t->added.push_back(std::move(tok));
    }
  }
  for (const AddedToken& tok : t->added) {
    if (static_cast<size_t>(tok.id) >= t->id_to_token.size()) t->id_to_token.resize(tok.id + 1);
    t->id_to_token[tok.id] = tok.content;
    t->added_by_id[tok.id] = &tok;
  }
  t->raw_matcher.Build(t->added, false);
  t->normalized_matcher.Build(t->added, true);
  if (const Json* p = root.Find("post_processor"))
    ReadPostProcessor(*p, Where(path, "post_processor"), *t);

  // BOS, EOS and PAD.
  auto id_of = [&](const std::string& token, const std::string& what) {
    if (token.empty()) return -1;
    for (const AddedToken& a : t->added)
      if (a.content == token) return a.id;
    const auto it = t->vocab.find(token);
    SM_CHECK(it != t->vocab.end())
        << what << ": '" << token << "' is not a token of '" << path << "'";
    return it->second;
  };
  const std::string config_path =
      (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  std::string bos, eos, pad;
  if (std::filesystem::exists(config_path)) {
    const Json config = Json::Parse(ReadText(config_path), config_path);
    bos = ConfigToken(config, "bos_token", "'" + config_path + "'");
    eos = ConfigToken(config, "eos_token", "'" + config_path + "'");
    pad = ConfigToken(config, "pad_token", "'" + config_path + "'");
    t->bos = id_of(bos, "'" + config_path + "' bos_token");
    t->eos = id_of(eos, "'" + config_path + "' eos_token");
    t->pad = id_of(pad, "'" + config_path + "' pad_token");
  }
  if (bos.empty() && !t->prefix_ids.empty()) t->bos = t->prefix_ids.front();
  if (eos.empty())  // the end-of-text tokens of the families supported, in that order
    for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "<eos>"}) {
      const bool added = std::any_of(t->added.begin(), t->added.end(),
                                     [&](const AddedToken& a) { return a.content == name; });
      if (added || t->vocab.count(std::string_view(name))) {
        t->eos = id_of(name, "");
        break;
      }
    }
  SM_CHECK(t->eos >= 0) << "'" << path << "' has no end-of-text token (</s>, <|end_of_text|>, "
                        << "<|endoftext|>, <|im_end|> or <eos>): put a tokenizer_config.json "
                        << "with eos_token beside it";
  if (t->pad < 0) t->pad = t->eos;
  return std::unique_ptr<HfTokenizer>(new HfTokenizer(std::move(t)));
}

int64_t HfTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_to_token.size()); }
int32_t HfTokenizer::bos() const { return impl_->bos; }
int32_t HfTokenizer::eos() const { return impl_->eos; }
int32_t HfTokenizer::pad() const { return impl_->pad; }
const std::vector<int32_t>& HfTokenizer::template_prefix() const { return impl_->prefix_ids; }
const std::vector<int32_t>& HfTokenizer::template_suffix() const { return impl_->suffix_ids; }

int32_t HfTokenizer::TokenId(std::string_view token) const {
  for (const AddedToken& a : impl_->added)
    if (a.content == token) return a.id;
  const auto it = impl_->vocab.find(token);
  return it == impl_->vocab.end() ? -1 : it->second;
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  const auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && it->second->special;
}

void HfTokenizer::Encode(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<AddedMatcher::Seg> segs;
  impl_->raw_matcher.Find(text, segs);
  for (const AddedMatcher::Seg& seg : segs) {
    if (seg.token) {
      out.push_back(seg.token->id);
    } else {
      impl_->EncodeSegment(std::string(text.substr(seg.begin, seg.end - seg.begin)), seg.begin == 0,
                           out);
    }
  }
}

std::string HfTokenizer::Decode(std::span<const int32_t> ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    SM_CHECK(id >= 0 && static_cast<size_t>(id) < impl_->id_to_token.size() &&
             !impl_->id_to_token[id].empty())
        << "token id " << id << " at position " << i << " is not in '" << impl_->file << "'";
    if (IsSpecial(id)) continue;
    tokens.push_back(impl_->id_to_token[id]);
  }
  if (!impl_->has_decoder) {  // the library joins the tokens with spaces
    std::string s;
    for (size_t i = 0; i < tokens.size(); ++i) s += (i ? " " : "") + tokens[i];
    return s;
  }
  for (const DecodeOp& op : impl_->decoder) op.Apply(tokens);
  std::string s;
  for (const std::string& t : tokens) s += t;
  return s;
}

}  // namespace seqmesh
