// runtime/hf_tokenizer on crafted tokenizer.json files whose ids are known exactly: merge order
// by rank (not by position), byte-level and metaspace pre-tokenization, split behaviors, byte
// fallback, unk fusing, added tokens with lstrip/rstrip, the template's BOS, BOS/EOS from
// tokenizer_config.json, decoding; and each unsupported or malformed file refused in one line
// naming the file, the field and the component. (Equality with the Hugging Face library on real
// vocabularies is hf_tokenizer_ref_test.sh's.)
#include "runtime/hf_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;
using testing::ThrowsWith;
using Ids = std::vector<int32_t>;

class HfTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("seqmesh_hf_tok_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes tokenizer.json (and tokenizer_config.json when `config` is set); returns its path.
  std::string Write(const std::string& json, const std::string& config = "") {
    std::ofstream(dir_ / "tokenizer.json") << json;
    if (!config.empty()) std::ofstream(dir_ / "tokenizer_config.json") << config;
    return (dir_ / "tokenizer.json").string();
  }
  Ids Encode(const HfTokenizer& t, const std::string& text) {
    Ids ids;
    t.Encode(text, ids);
    return ids;
  }

  // A BPE file: `model` holds the model's fields after "type".
  static std::string File(const std::string& model, const std::string& rest = "") {
    return R"({"version": "1.0", "truncation": null, "added_tokens": [)" + added_ + "]," + rest +
           R"( "model": {"type": "BPE", )" + model + "}}";
  }
  static std::string added_;
  fs::path dir_;
};
std::string HfTokenizerTest::added_ =
    R"({"id": 9, "content": "</s>", "special": true, "normalized": false})";

// The pairs merge by rank, wherever they are: "b c" (rank 0) before "a b" (rank 1), so "abc" is
// a + bc, then "a bc" (rank 2) makes abc.
TEST_F(HfTokenizerTest, MergesTheLowestRankFirstNotTheLeftmost) {
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5})";
  auto t = HfTokenizer::Load(Write(File(vocab + R"(, "merges": ["b c", "a b"])")));
  EXPECT_EQ(Encode(*t, "abc"), (Ids{0, 4}));
  EXPECT_EQ(Encode(*t, "ab"), (Ids{3}));
  EXPECT_EQ(Encode(*t, "abab"), (Ids{3, 3}));
  t = HfTokenizer::Load(Write(File(vocab + R"(, "merges": ["b c", "a b", "a bc"])")));
  EXPECT_EQ(Encode(*t, "abc"), (Ids{5}));
  EXPECT_EQ(t->eos(), 9);  // </s>, found by name
  EXPECT_EQ(t->bos(), -1);
  EXPECT_EQ(t->vocab_size(), 10);
}

// Split's behaviors decide where pieces end, and merges never cross a piece.
TEST_F(HfTokenizerTest, SplitBehaviorsBoundTheMerges) {
  const std::string model = R"("vocab": {"a": 0, "-": 1, "b": 2, "a-": 3, "-b": 4},
                               "merges": ["a -", "- b"])";
  auto split = [&](const std::string& behavior) {
    return R"( "pre_tokenizer": {"type": "Split", "pattern": {"String": "-"}, "behavior": ")" +
           behavior + R"(", "invert": false},)";
  };
  EXPECT_EQ(Encode(*HfTokenizer::Load(Write(File(model))), "a-b"), (Ids{3, 2}));
  EXPECT_EQ(Encode(*HfTokenizer::Load(Write(File(model, split("Isolated")))), "a-b"),
            (Ids{0, 1, 2}));
  EXPECT_EQ(Encode(*HfTokenizer::Load(Write(File(model, split("MergedWithPrevious")))), "a-b"),
            (Ids{3, 2}));
  EXPECT_EQ(Encode(*HfTokenizer::Load(Write(File(model, split("MergedWithNext")))), "a-b"),
            (Ids{0, 4}));
  EXPECT_EQ(Encode(*HfTokenizer::Load(Write(File(model, split("Removed")))), "a-b"), (Ids{0, 2}));
  EXPECT_EQ(Encode(*HfTokenizer::Load(Write(File(model, split("Contiguous")))), "a--b"),
            (Ids{0, 1, 1, 2}));
}

// Llama 2's shape: "▁" for spaces and in front, byte fallback for unknown characters, the
// template's <s>, and a decoder that undoes all of it.
TEST_F(HfTokenizerTest, MetaspaceWithByteFallbackAndTemplate) {
  std::string vocab = R"("<unk>": 0, "<s>": 1)";
  for (int b = 0; b < 256; ++b) {
    char tok[16];
    std::snprintf(tok, sizeof tok, "<0x%02X>", b);
    vocab += ", \"" + std::string(tok) + "\": " + std::to_string(2 + b);
  }
  vocab += R"(, "▁": 258, "h": 259, "i": 260, "hi": 261, "▁hi": 262)";
  added_ = R"({"id": 0, "content": "<unk>", "special": true, "normalized": false},
              {"id": 1, "content": "<s>", "special": true, "normalized": false},
              {"id": 9, "content": "</s>", "special": true, "normalized": false})";
  const std::string rest = R"(
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
    "pre_tokenizer": null,
    "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A"}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},)";
  const auto t =
      HfTokenizer::Load(Write(File(R"("unk_token": "<unk>", "byte_fallback": true, "vocab": {)" +
                                       vocab + R"(}, "merges": ["h i", "▁ hi"])",
                                   rest),
                              R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>"})"));
  EXPECT_EQ(Encode(*t, "hi hi"), (Ids{262, 262}));
  EXPECT_EQ(Encode(*t, "hé"), (Ids{258, 259, 2 + 0xC3, 2 + 0xA9}));  // é: bytes C3 A9
  EXPECT_EQ(t->DocumentPrefix(), (Ids{1}));
  EXPECT_EQ(t->bos(), 1);
  EXPECT_EQ(t->eos(), 9);
  EXPECT_EQ(t->Decode(Ids{1, 262, 262, 9}), "hi hi");
  EXPECT_EQ(t->Decode(Ids{258, 259, 2 + 0xC3, 2 + 0xA9}), "hé");
  EXPECT_EQ(t->Decode(Ids{262, 2 + 0xC3}), "hi\xEF\xBF\xBD");  // a lone lead byte: U+FFFD
  added_ = R"({"id": 9, "content": "</s>", "special": true, "normalized": false})";
}

// Without byte fallback, unknown characters become unk_token, one per run with fuse_unk.
TEST_F(HfTokenizerTest, UnknownCharactersFuseIntoOneUnk) {
  const std::string model = R"("unk_token": "?", "vocab": {"?": 0, "a": 1}, "merges": [])";
  EXPECT_EQ(Encode(*HfTokenizer::Load(Write(File(model))), "axyza"), (Ids{1, 0, 0, 0, 1}));
  EXPECT_EQ(Encode(*HfTokenizer::Load(Write(File(R"("fuse_unk": true, )" + model))), "axyza"),
            (Ids{1, 0, 1}));
}

// Added tokens are cut out first, longest first; lstrip and rstrip take the spaces around them.
TEST_F(HfTokenizerTest, AddedTokensAreCutOutWithTheirSpaces) {
  added_ = R"({"id": 9, "content": "</s>", "special": true, "normalized": false},
              {"id": 7, "content": "<m>", "special": true, "normalized": false, "lstrip": true,
               "rstrip": true},
              {"id": 8, "content": "<m>>", "special": false, "normalized": false})";
  const auto t =
      HfTokenizer::Load(Write(File(R"("vocab": {"a": 0, " ": 1, ">": 2}, "merges": [])")));
  EXPECT_EQ(Encode(*t, "a</s>a"), (Ids{0, 9, 0}));
  EXPECT_EQ(Encode(*t, "a  <m>  a"), (Ids{0, 7, 0}));
  EXPECT_EQ(Encode(*t, "a <m>>a"), (Ids{0, 1, 8, 0}));  // the longer match wins
  EXPECT_EQ(t->Decode(Ids{0, 9, 8, 0}), "a <m>> a");    // no decoder: tokens joined by spaces
  EXPECT_TRUE(t->IsSpecial(7));
  EXPECT_FALSE(t->IsSpecial(8));
  added_ = R"({"id": 9, "content": "</s>", "special": true, "normalized": false})";
}

TEST_F(HfTokenizerTest, RefusesWhatItDoesNotImplementByName) {
  const std::string ok = R"("vocab": {"a": 0}, "merges": [])";
  const std::string path = (dir_ / "tokenizer.json").string();
  struct Case {
    std::string file, message;
  };
  const std::vector<Case> cases = {
      {R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})",
       "'" + path + "' model: the model 'WordPiece' is not supported (only BPE models are)"},
      {File(ok, R"( "normalizer": {"type": "BertNormalizer", "lowercase": true},)"),
       "'" + path + "' normalizer: the normalizer 'BertNormalizer' is not supported"},
      {File(ok, R"( "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"},
                   {"type": "Lowercase"}]},)"),
       "normalizer.normalizers[1]: the normalizer 'Lowercase' is not supported"},
      {File(ok, R"( "pre_tokenizer": {"type": "Whitespace"},)"),
       "the pre-tokenizer 'Whitespace' is not supported"},
      {File(ok, R"( "decoder": {"type": "WordPiece", "prefix": "##"},)"),
       "the decoder 'WordPiece' is not supported"},
      {File(ok, R"( "post_processor": {"type": "BertProcessing"},)"),
       "the post-processor 'BertProcessing' is not supported"},
      {File(R"("dropout": 0.1, )" + ok), "model.dropout is set"},
      {R"({"truncation": {"max_length": 5}, "model": {"type": "BPE", "vocab": {}, "merges": []}})",
       "truncation is set: seqmesh cuts documents itself (prep --max-length)"},
      {File(R"("vocab": {"a": 0, "ab": 1}, "merges": ["a b"])"),
       "model.merges[0]: 'b' is not in the vocab"},
      {File(R"("vocab": {"a": 0, "b": 1}, "merges": ["a b"])"),
       "model.merges[0]: the merged token 'ab' is not in the vocab"},
      {File(R"("vocab": {"a": 0}, "merges": ["a"])"),
       "model.merges[0] 'a' is not two tokens separated by one space"},
      {File(R"("unk_token": "<unk>", )" + ok), "model.unk_token '<unk>' is not in the vocab"},
      {File(ok, R"( "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"},
                   "behavior": "Isolated"},)"),
       "pre_tokenizer.pattern"},
      {File(ok, R"( "pre_tokenizer": {"type": "Split", "pattern": {"String": "a"},
                   "behavior": "Sideways"},)"),
       "behavior 'Sideways' is not one of Removed, Isolated"},
      {R"({"model": )", path + ": unexpected end of input"},  // malformed JSON names the file
  };
  for (const Case& c : cases) {
    Write(c.file);
    EXPECT_TRUE(ThrowsWith([&] { HfTokenizer::Load(path); }, c.message)) << c.file;
  }
  added_ = "";
  Write(File(ok));
  EXPECT_TRUE(ThrowsWith([&] { HfTokenizer::Load(path); },
                         "has no end-of-text token (</s>, <|end_of_text|>, <|endoftext|>, "
                         "<|im_end|> or <eos>): put a tokenizer_config.json with eos_token"));
  Write(File(ok), R"({"eos_token": "<nope>"})");
  EXPECT_TRUE(ThrowsWith([&] { HfTokenizer::Load(path); }, "eos_token: '<nope>' is not a token"));
  added_ = R"({"id": 9, "content": "</s>", "special": true, "normalized": false})";
  fs::remove(dir_ / "tokenizer_config.json");
  EXPECT_TRUE(
      ThrowsWith([&] { HfTokenizer::Load((dir_ / "absent.json").string()); }, "cannot read"));
  const auto t = HfTokenizer::Load(Write(File(ok)));
  EXPECT_TRUE(ThrowsWith([&] { t->Decode(Ids{0, 5}); }, "token id 5 at position 1 is not in"));
}

}  // namespace
}  // namespace seqmesh
