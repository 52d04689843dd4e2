#include "runtime/hf_tokenizer_pipeline.h"

#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <unordered_map>

#include "runtime/check.h"
#include "runtime/text.h"

namespace seqmesh::hf {

std::string Where(const std::string& file, const std::string& field) {
  return "'" + file + "' " + field;
}

bool OptBool(const Json& j, const std::string& key, bool fallback, const std::string& what) {
  const Json* f = j.Find(key);
  return f && !f->is_null() ? f->AsBool(what + "." + key) : fallback;
}

std::string OptString(const Json& j, const std::string& key, const std::string& what) {
  const Json* f = j.Find(key);
  return f && !f->is_null() ? f->AsString(what + "." + key) : "";
}

namespace {

// ---- Unicode classes, as Rust's ----

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
  size_t len = 0;
  return CodePointAt(s, StartOfLast(s, s.size()), &len);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
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

// ---- splitting, as NormalizedString::split does ----

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

// Calls read(item, what) on `j`, or on each item of its `key` array (recursively) when `j` is a
// Sequence.
template <typename Read>
void ForEachInSequence(const Json& j, const std::string& what, const std::string& key, Read read) {
  if (j.Require("type", what).AsString(what + ".type") != "Sequence") return read(j, what);
  const auto& items = j.Require(key, what).AsArray(what + "." + key);
  for (size_t i = 0; i < items.size(); ++i)
    ForEachInSequence(items[i], what + "." + key + "[" + std::to_string(i) + "]", key, read);
}

constexpr const char* kFix =
    ": seqmesh supports the components of the GPT-2, Llama 3, Qwen, Llama 2, Mistral and "
    "TinyLlama tokenizers (docs/TOKENIZERS.md lists them)";

}  // namespace

void NormOp::Apply(std::string& s) const {
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
      if (!text.empty()) {  // a literal: the common case (" " to "▁")
        if (s.find(text) != std::string::npos) s = ReplaceAll(s, text, content);
        return;
      }
      std::string out;
      {
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
      while (right && e > b) {
        const size_t k = StartOfLast(s, e);
        if (!IsWhitespace(CodePointAt(s, k, &len))) break;
        e = k;
      }
      s = s.substr(b, e - b);
      return;
    }
  }
}

void PreOp::Apply(std::vector<Piece>& pieces) const {
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
        std::string s = ReplaceAll(p.text, " ", replacement);
        const bool starts = s.compare(0, replacement.size(), replacement) == 0;
        if (!starts && (prepend == Prepend::kAlways || (prepend == Prepend::kFirst && p.at_start)))
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

void DecodeOp::Apply(std::vector<std::string>& tokens) const {
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
      for (size_t i = 0; i < tokens.size(); ++i)
        tokens[i] = ReplaceAll(tokens[i], from, i == 0 && prepend ? "" : " ");
      return;
    case kReplace:
      for (std::string& t : tokens) t = ReplaceAll(t, from, to);
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
        if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && HexDigit(t[3]) >= 0 &&
            HexDigit(t[4]) >= 0) {  // <0xNN>: one byte
          bytes += static_cast<char>(HexDigit(t[3]) * 16 + HexDigit(t[4]));
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

void AddedMatcher::Build(const std::vector<AddedToken>& tokens, bool normalized) {
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

void AddedMatcher::Find(std::string_view s, std::vector<Seg>& out) const {
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
      size_t len = 0;
      while (b > 0) {
        const size_t k = StartOfLast(s, b);
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

void ReadNormalizer(const Json& j, const std::string& what, std::vector<NormOp>& ops) {
  if (j.is_null()) return;
  ForEachInSequence(j, what, "normalizers", [&](const Json& j, const std::string& what) {
    const std::string type = j.Require("type", what).AsString(what + ".type");
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
  });
}

void ReadPreTokenizer(const Json& j, const std::string& what, std::vector<PreOp>& ops) {
  if (j.is_null()) return;
  ForEachInSequence(j, what, "pretokenizers", [&](const Json& j, const std::string& what) {
    const std::string type = j.Require("type", what).AsString(what + ".type");
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
  });
}

void ReadDecoder(const Json& j, const std::string& what, std::vector<DecodeOp>& ops) {
  ForEachInSequence(j, what, "decoders", [&](const Json& j, const std::string& what) {
    const std::string type = j.Require("type", what).AsString(what + ".type");
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
  });
}

void ReadPostProcessor(const Json& j, const std::string& what, std::vector<int32_t>& prefix,
                       std::vector<int32_t>& suffix) {
  if (j.is_null()) return;
  ForEachInSequence(j, what, "processors", [&](const Json& j, const std::string& what) {
    const std::string type = j.Require("type", what).AsString(what + ".type");
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
        (after ? suffix : prefix).push_back(static_cast<int32_t>(id.AsInt(w)));
    }
  });
}

}  // namespace seqmesh::hf
