// A compiled PCRE2 expression (UTF-8, Unicode properties, JIT where the machine allows) for the
// tokenizers' split patterns, which use \p{L}, possessive quantifiers and lookahead.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace seqmesh {

class Regex {
 public:
  // Errors name `what` (where the pattern came from) and the offset PCRE2 reports.
  Regex(std::string_view pattern, std::string_view what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of the non-overlapping matches in `text`, from the left;
  // an empty match is skipped (the search goes on one character later). Throws, naming the byte,
  // when `text` is not valid UTF-8.
  void Matches(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  struct Code;
  Code* code_;
};

}  // namespace seqmesh
