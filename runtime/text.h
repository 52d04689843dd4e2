// Small text helpers shared by the parsers (configs, flags, environment variables, JSON) and the
// tokenizers: integers, edit distance, and UTF-8.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace seqmesh {

// The whole of `text` as a decimal integer ("12", "-3"); nullopt for anything else ("", "1x",
// "1.5", out of range).
std::optional<int64_t> ParseInt64(const std::string& text);

// Levenshtein distance, and the candidate closest to `name` by it (the first of equals; "" when
// there is none): the "did you mean" of every parser.
size_t EditDistance(const std::string& a, const std::string& b);
std::string ClosestName(const std::string& name, const std::vector<std::string>& candidates);

// ---- UTF-8 ----

// Appends the code point `cp` (at most U+10FFFF) encoded as UTF-8.
void AppendUtf8(std::string& out, uint32_t cp);

// The code point that starts at s[i] and its length in bytes in `*len`. For valid UTF-8; a lead
// byte cut off by the end of `s` reads as U+FFFD of length 1.
uint32_t CodePointAt(std::string_view s, size_t i, size_t* len);

// The offset of the first byte of the code point that ends at s[end) (end > 0).
size_t StartOfLast(std::string_view s, size_t end);

// Bytes to text as Rust's String::from_utf8_lossy does: each maximal ill-formed subsequence
// becomes one U+FFFD.
std::string Utf8Lossy(std::string_view s);

// `s` with every occurrence of `from` (not empty) replaced by `to`, left to right.
std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to);

}  // namespace seqmesh
