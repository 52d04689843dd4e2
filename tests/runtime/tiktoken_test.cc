// runtime/tiktoken on crafted rank files: exact ids from the merge order (the lowest rank first,
// a merge only through ranked tokens), the split pattern, round trips, and each bad file refused
// in one line naming the file, the line and the fault.
#include "runtime/tiktoken.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::ThrowsWith;

std::string B64(const std::string& s) {
  static const char* kA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < s.size(); i += 3) {
    uint32_t n = static_cast<unsigned char>(s[i]) << 16;
    if (i + 1 < s.size()) n |= static_cast<unsigned char>(s[i + 1]) << 8;
    if (i + 2 < s.size()) n |= static_cast<unsigned char>(s[i + 2]);
    out += kA[n >> 18];
    out += kA[(n >> 12) & 63];
    out += i + 1 < s.size() ? kA[(n >> 6) & 63] : '=';
    out += i + 2 < s.size() ? kA[n & 63] : '=';
  }
  return out;
}

class TiktokenTest : public ::testing::Test {
 protected:
  // Every byte, then the merges "he" 256, "ll" 257, "hell" 258, "hello" 259, " w" 260, "or" 261,
  // "orld" 262, and `extra` lines.
  std::string Write(const std::string& extra = "", bool all_bytes = true) {
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("seqmesh_tiktoken_" + std::to_string(getpid()) + ".tiktoken"))
                                 .string();
    std::ofstream f(path);
    for (int b = all_bytes ? 0 : 1; b < 256; ++b)
      f << B64(std::string(1, static_cast<char>(b))) << " " << b << "\n";
    int rank = 256;
    for (const char* t : {"he", "ll", "hell", "hello", " w", "or", "orld"})
      f << B64(t) << " " << rank++ << "\n";
    f << extra;
    return path_ = path;
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::string path_;
};

TEST_F(TiktokenTest, MergesTheLowestRankedPairFirstAndOnlyThroughRankedTokens) {
  const auto tok = TiktokenTokenizer::Load(Write(), "r50k_base");
  std::vector<int32_t> ids;
  tok->Encode("hello world", ids);
  // "hello" is a token; " world": " w" (260) first, then "or" (261); "orl" is no token, so
  // "orld" (262) is never reached, and "l", "d" stay bytes.
  EXPECT_EQ(ids, (std::vector<int32_t>{259, 260, 261, 'l', 'd'}));
  EXPECT_EQ(tok->Decode(ids), "hello world");
  ids.clear();
  tok->Encode("hell", ids);  // "he"+"ll" (256, 257) merge into "hell" (258)
  EXPECT_EQ(ids, (std::vector<int32_t>{258}));
  // The split pattern: digits and letters are pieces of their own, so no merge crosses them.
  ids.clear();
  tok->Encode("he1he", ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{256, '1', 256}));
  EXPECT_EQ(tok->vocab_size(), 264);  // ranks 0..262, <|endoftext|> 263
  EXPECT_EQ(tok->eos(), 263);
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{259, 263, 260}), "hello w");  // EOT decodes to ""
  EXPECT_TRUE(ThrowsWith([&] { tok->Decode(std::vector<int32_t>{264}); },
                         "token id 264 at position 0 is not in this encoding"));
}

TEST_F(TiktokenTest, BadFilesAndPatternsAreRefusedNamingTheLine) {
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load(Write("!!!! 263\n"), "r50k_base"); },
                         "line 264: not a tiktoken rank line"));
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load(Write("eHk= x\n"), "r50k_base"); },
                         "line 264: rank 'x' is not an integer id"));
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load(Write("eHk= 5\n"), "r50k_base"); },
                         "line 264: rank 5 appears twice"));
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load(Write("aGU= 263\n"), "r50k_base"); },
                         "line 264: the token's bytes appear twice"));
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load(Write("eHk= 888888862\n"), "r50k_base"); },
                         "line 264: rank 888888862 is far beyond the 264 lines"));
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load(Write("", false), "r50k_base"); },
                         "byte 0 has no rank"));
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load(Write()); },
                         "no split pattern for an encoding named 'seqmesh_tiktoken_"));
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load(Write(), "(unclosed"); },
                         "the pattern does not compile at offset 9"));
  EXPECT_TRUE(ThrowsWith([&] { TiktokenTokenizer::Load("/nonexistent/x.tiktoken"); },
                         "cannot read the tiktoken file '/nonexistent/x.tiktoken'"));
  const auto tok = TiktokenTokenizer::Load(Write(), "r50k_base");
  std::vector<int32_t> ids;
  EXPECT_TRUE(ThrowsWith([&] { tok->Encode("ok \xFF\xFE bad", ids); }, "valid UTF-8"));
}

}  // namespace
}  // namespace seqmesh
