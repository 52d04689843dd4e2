// What the BPE tokenizers (runtime/tiktoken.h, runtime/hf_tokenizer.h) share: string-keyed maps
// looked up by string_view, and each thread's memo of the ids of the pieces it has merged.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace seqmesh {

struct StringViewHash {  // lookups by string_view, without a copy
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringViewHash, std::equal_to<>>;

// Pieces repeat (words, indentation): each thread remembers the ids of the pieces shorter than
// 256 bytes it has merged, up to 64K pieces, as tiktoken's and the tokenizers library's caches
// do. A tokenizer owns one PieceCache; a thread's memo belongs to one tokenizer at a time, named
// by a serial number (not its address: a tokenizer loaded where a freed one was must not see
// the other's ids).
class PieceCache {
 public:
  PieceCache() : serial_(NextSerial()) {}
  PieceCache(const PieceCache&) = delete;
  PieceCache& operator=(const PieceCache&) = delete;

  // Appends the ids of `piece`: the memo's, or merge(piece, out)'s, remembered.
  template <typename Merge>
  void Ids(std::string_view piece, std::vector<int32_t>& out, const Merge& merge) const {
    if (piece.size() >= 256) return merge(piece, out);
    struct Memo {
      uint64_t serial = 0;
      StringMap<std::vector<int32_t>> ids;
    };
    thread_local Memo memo;
    if (memo.serial != serial_ || memo.ids.size() > (1 << 16)) {
      memo.ids.clear();
      memo.serial = serial_;
    }
    if (const auto it = memo.ids.find(piece); it != memo.ids.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
    const size_t first = out.size();
    merge(piece, out);
    memo.ids.emplace(std::string(piece), std::vector<int32_t>(out.begin() + first, out.end()));
  }

 private:
  static uint64_t NextSerial() {
    static std::atomic<uint64_t> next{1};
    return next++;
  }
  const uint64_t serial_;
};

}  // namespace seqmesh
