#include "runtime/tiktoken.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>

#include "runtime/check.h"
#include "runtime/regex.h"

namespace seqmesh {
namespace {

// tiktoken's patterns (tiktoken_ext/openai_public.py).
constexpr const char* kR50k =
    R"('(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s)";
constexpr const char* kCl100k = R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+)"
                                R"(| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s)";
constexpr const char* kO200k =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)"
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)"
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// <|endoftext|> of the known encodings (the others: the id after the last rank).
int32_t EndOfTextOf(const std::string& encoding, int32_t next) {
  if (encoding == "r50k_base" || encoding == "p50k_base") return 50256;
  if (encoding == "cl100k_base") return 100257;
  if (encoding == "o200k_base") return 199999;
  return next;
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with padding; false on anything else.
bool DecodeBase64(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 != 0 || in.empty()) return false;
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + k];
      v[k] = c == '=' && i + 4 == in.size() && k >= 2 ? 0 : Base64Value(c);
      if (v[k] < 0) return false;
    }
    const uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out += static_cast<char>(n >> 16);
    if (in[i + 2] != '=') out += static_cast<char>((n >> 8) & 0xFF);
    if (in[i + 3] != '=') out += static_cast<char>(n & 0xFF);
  }
  return true;
}

}  // namespace

TiktokenTokenizer::~TiktokenTokenizer() = default;

std::string TiktokenTokenizer::PatternOf(const std::string& encoding) {
  if (encoding == "r50k_base" || encoding == "p50k_base" || encoding == "gpt2") return kR50k;
  if (encoding == "cl100k_base") return kCl100k;
  if (encoding == "o200k_base") return kO200k;
  return "";
}

std::unique_ptr<TiktokenTokenizer> TiktokenTokenizer::Load(const std::string& path,
                                                           const std::string& pattern_in) {
  std::ifstream in(path);
  SM_CHECK(in) << "cannot read the tiktoken file '" << path << "'";
  std::unique_ptr<TiktokenTokenizer> t(new TiktokenTokenizer());
  std::string line, bytes;
  int64_t n = 0;
  int32_t max_rank = -1;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    SM_CHECK(space != std::string::npos && DecodeBase64(line.substr(0, space), bytes))
        << "'" << path << "' line " << n
        << ": not a tiktoken rank line (base64 of the token's bytes, a space, its rank)";
    const std::string rank_text = line.substr(space + 1);
    char* end = nullptr;
    const long rank = std::strtol(rank_text.c_str(), &end, 10);
    SM_CHECK(!rank_text.empty() && *end == '\0' && rank >= 0 && rank < INT32_MAX)
        << "'" << path << "' line " << n << ": rank '" << rank_text << "' is not an integer id";
    SM_CHECK(t->ranks_.emplace(bytes, static_cast<int32_t>(rank)).second)
        << "'" << path << "' line " << n << ": the token's bytes appear twice";
    // Ranks number the tokens from 0 with few gaps: one far beyond the lines read so far would
    // make the id table absurdly large (found by fuzzing: rank 888888862 on line 5).
    SM_CHECK(rank < 2 * n + 1024) << "'" << path << "' line " << n << ": rank " << rank
                                  << " is far beyond the " << n
                                  << " lines so far (ranks number the tokens from 0)";
    if (static_cast<size_t>(rank) >= t->tokens_.size()) t->tokens_.resize(rank + 1);
    SM_CHECK(t->tokens_[rank].empty())
        << "'" << path << "' line " << n << ": rank " << rank << " appears twice";
    t->tokens_[rank] = bytes;
    max_rank = std::max(max_rank, static_cast<int32_t>(rank));
  }
  SM_CHECK(max_rank >= 0) << "'" << path << "' holds no ranks";
  for (int b = 0; b < 256; ++b)
    SM_CHECK(t->ranks_.count(std::string(1, static_cast<char>(b))))
        << "'" << path << "': byte " << b << " has no rank (every byte needs one)";
  const std::string stem = std::filesystem::path(path).stem().string();
  t->eot_ = EndOfTextOf(stem, max_rank + 1);
  if (static_cast<size_t>(t->eot_) >= t->tokens_.size()) t->tokens_.resize(t->eot_);

  std::string pattern = pattern_in.empty() ? PatternOf(stem) : pattern_in;
  if (!PatternOf(pattern).empty()) pattern = PatternOf(pattern);
  SM_CHECK(!pattern.empty()) << "'" << path << "': no split pattern for an encoding named '" << stem
                             << "': pass one (a PCRE2 expression, or cl100k_base, "
                             << "o200k_base, p50k_base or r50k_base)";
  t->regex_ = std::make_unique<Regex>(pattern, "the split pattern of '" + path + "'");
  return t;
}

void TiktokenTokenizer::EncodePiece(std::string_view piece, std::vector<int32_t>& out) const {
  if (auto it = ranks_.find(piece); it != ranks_.end()) {
    out.push_back(it->second);
    return;
  }
  cache_.Ids(piece, out, [this](std::string_view p, std::vector<int32_t>& o) { MergePiece(p, o); });
}

// tiktoken's byte_pair_merge: the piece's bytes as parts, and while two adjacent parts form a
// ranked token, the lowest-ranked such pair merges (the leftmost on a tie).
void TiktokenTokenizer::MergePiece(std::string_view piece, std::vector<int32_t>& out) const {
  std::vector<size_t> starts(piece.size() + 1);
  for (size_t i = 0; i <= piece.size(); ++i) starts[i] = i;
  auto rank_of = [&](size_t i) {  // rank of parts i and i + 1 joined, or INT32_MAX
    if (i + 2 >= starts.size()) return INT32_MAX;
    const auto it = ranks_.find(piece.substr(starts[i], starts[i + 2] - starts[i]));
    return it == ranks_.end() ? INT32_MAX : it->second;
  };
  std::vector<int32_t> pair_rank(starts.size());
  for (size_t i = 0; i + 1 < starts.size(); ++i) pair_rank[i] = rank_of(i);
  while (starts.size() > 2) {
    size_t best = 0;
    for (size_t i = 1; i + 2 < starts.size(); ++i)
      if (pair_rank[i] < pair_rank[best]) best = i;
    if (pair_rank[best] == INT32_MAX) break;
    starts.erase(starts.begin() + best + 1);
    pair_rank.erase(pair_rank.begin() + best + 1);
    pair_rank[best] = rank_of(best);
    if (best > 0) pair_rank[best - 1] = rank_of(best - 1);
  }
  for (size_t i = 0; i + 1 < starts.size(); ++i)
    out.push_back(ranks_.find(piece.substr(starts[i], starts[i + 1] - starts[i]))->second);
}

void TiktokenTokenizer::Encode(std::string_view text, std::vector<int32_t>& out) const {
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  matches.clear();
  regex_->Matches(text, matches);
  size_t at = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > at) EncodePiece(text.substr(at, begin - at), out);  // text no match covers
    EncodePiece(text.substr(begin, end - begin), out);
    at = end;
  }
  if (at < text.size()) EncodePiece(text.substr(at), out);
}

std::string TiktokenTokenizer::Decode(std::span<const int32_t> ids) const {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id == eot_) continue;  // special
    SM_CHECK(id >= 0 && static_cast<size_t>(id) < tokens_.size() && !tokens_[id].empty())
        << "token id " << id << " at position " << i << " is not in this encoding";
    s += tokens_[id];
  }
  return s;
}

}  // namespace seqmesh
