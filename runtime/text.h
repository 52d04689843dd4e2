// Small text helpers shared by the parsers of configs, flags and environment variables.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace seqmesh {

// The whole of `text` as a decimal integer ("12", "-3"); nullopt for anything else ("", "1x",
// "1.5", out of range).
std::optional<int64_t> ParseInt64(const std::string& text);

// Levenshtein distance, and the candidate closest to `name` by it (the first of equals; "" when
// there is none): the "did you mean" of every parser.
size_t EditDistance(const std::string& a, const std::string& b);
std::string ClosestName(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace seqmesh
