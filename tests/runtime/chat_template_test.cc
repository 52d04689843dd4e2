// runtime/chat_template on a crafted byte-level tokenizer (each byte its own id, ids 256+ for
// the formats' special tokens, one merge "a b"): each format's exact ids and loss mask, the rule
// for a token that straddles a boundary, template detection, and the refusals.
#include "runtime/chat_template.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "runtime/hf_tokenizer.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;
using testing::ThrowsWith;
using Ids = std::vector<int32_t>;
using Mask = std::vector<uint8_t>;

const char* kSpecials[] = {"<|begin_of_text|>",
                           "<|start_header_id|>",
                           "<|end_header_id|>",
                           "<|eot_id|>",
                           "<|im_start|>",
                           "<|im_end|>",
                           "<s>",
                           "</s>"};

class ChatTemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("seqmesh_chat_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    // GPT-2's byte alphabet for the printable ASCII used here is the byte itself; space is Ġ
    // and newline Ċ.
    std::string vocab, added;
    for (int b = 0; b < 256; ++b) {
      std::string tok;
      if (b == ' ')
        tok = "Ġ";
      else if (b == '\n')
        tok = "Ċ";
      else if (b > ' ' && b < 127 && b != '"' && b != '\\')
        tok = std::string(1, char(b));
      else if (b == '"')
        tok = "\\\"";
      else if (b == '\\')
        tok = "\\\\";
      else
        continue;  // bytes the tests never use
      vocab += (vocab.empty() ? "" : ", ") + ("\"" + tok + "\": ") + std::to_string(b);
    }
    vocab += ", \"ab\": 300";
    for (int i = 0; i < 8; ++i)
      added += std::string(i ? ", " : "") + R"({"id": )" + std::to_string(256 + i) +
               R"(, "content": ")" + kSpecials[i] + R"(", "special": true, "normalized": false})";
    std::ofstream(dir_ / "tokenizer.json")
        << R"({"added_tokens": [)" << added
        << R"(], "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
              "decoder": {"type": "ByteLevel"},
              "model": {"type": "BPE", "vocab": {)"
        << vocab << R"(}, "merges": ["a b"]}})";
    tok_ = HfTokenizer::Load((dir_ / "tokenizer.json").string());
  }
  void TearDown() override { fs::remove_all(dir_); }
  static Ids Bytes(const std::string& s) { return Ids(s.begin(), s.end()); }
  static Ids Cat(std::initializer_list<Ids> parts) {
    Ids out;
    for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  }
  static Mask Flags(std::initializer_list<std::pair<size_t, uint8_t>> runs) {
    Mask out;
    for (const auto& [n, v] : runs) out.insert(out.end(), n, v);
    return out;
  }
  fs::path dir_;
  std::unique_ptr<HfTokenizer> tok_;
};

const std::vector<ChatMessage> kChat = {
    {"system", "sys"}, {"user", " hi "}, {"assistant", "yo"}, {"user", "q"}, {"assistant", "r"}};

TEST_F(ChatTemplateTest, Llama3TrainsTheAssistantTurnsAndTheirEndOfTurn) {
  const ChatTokens t = EncodeChat(ChatFormat::kLlama3, kChat, *tok_, "x");
  auto turn = [](const std::string& role, const std::string& content) {
    return Cat({{257}, Bytes(role), {258}, Bytes("\n\n" + content), {259}});
  };
  EXPECT_EQ(t.ids, Cat({{256},
                        turn("system", "sys"),
                        turn("user", "hi"),
                        turn("assistant", "yo"),
                        turn("user", "q"),
                        turn("assistant", "r")}));
  // 1 + (1+6+1+2+3+1) + (1+4+1+2+2+1) + (1+9+1+2) [yo<|eot_id|>: 3] + (1+4+1+2+1+1) + (1+9+1+2) [r,
  // eot]
  EXPECT_EQ(t.trained, Flags({{1 + 14 + 11 + 13, 0}, {3, 1}, {10 + 13, 0}, {2, 1}}));
}

TEST_F(ChatTemplateTest, ChatMlTrainsContentAndImEndButNotTheNewline) {
  const ChatTokens t =
      EncodeChat(ChatFormat::kChatMl, {{"user", "hi"}, {"assistant", "yo"}}, *tok_, "x");
  EXPECT_EQ(t.ids, Cat({{260},
                        Bytes("user\nhi"),
                        {261},
                        Bytes("\n"),
                        {260},
                        Bytes("assistant\nyo"),
                        {261},
                        Bytes("\n")}));
  EXPECT_EQ(t.trained, Flags({{1 + 7 + 1 + 1 + 1 + 10, 0}, {3, 1}, {1, 0}}));
}

TEST_F(ChatTemplateTest, Llama2PutsTheSystemPromptInTheFirstInstruction) {
  const ChatTokens t = EncodeChat(ChatFormat::kLlama2, kChat, *tok_, "x");
  const std::string first = "[INST] <<SYS>>\nsys\n<</SYS>>\n\nhi [/INST]";
  EXPECT_EQ(t.ids, Cat({{262},
                        Bytes(first),
                        Bytes(" yo "),
                        {263},
                        {262},
                        Bytes("[INST] q [/INST]"),
                        Bytes(" r "),
                        {263}}));
  EXPECT_EQ(t.trained, Flags({{1 + first.size(), 0}, {5, 1}, {1 + 16, 0}, {4, 1}}));
}

// A token that straddles the prompt and the completion belongs to the prompt: "a" + "b" merge.
TEST_F(ChatTemplateTest, PlainTrainsTheCompletionAndEosAndAStraddlingTokenIsThePrompts) {
  const ChatTokens t = EncodeCompletion(ChatFormat::kPlain, "xa", "bc", *tok_, "x");
  EXPECT_EQ(t.ids, (Ids{'x', 300, 'c', 263}));  // EOS: </s>, found by name
  EXPECT_EQ(t.trained, (Mask{0, 0, 1, 1}));
  const ChatTokens u = EncodeCompletion(ChatFormat::kPlain, "x", "yz", *tok_, "x");
  EXPECT_EQ(u.trained, (Mask{0, 1, 1, 1}));
}

TEST_F(ChatTemplateTest, DetectsTheFamiliesTemplatesByTheirMarkers) {
  EXPECT_EQ(DetectChatFormat("{{ '<|start_header_id|>' + role + '<|end_header_id|>' }}<|eot_id|>"),
            ChatFormat::kLlama3);
  EXPECT_EQ(DetectChatFormat("{{'<|im_start|>' + message['role'] + '\\n'}}"), ChatFormat::kChatMl);
  EXPECT_EQ(DetectChatFormat("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"),
            ChatFormat::kLlama2);
  EXPECT_EQ(DetectChatFormat("{% for m in messages %}<start_of_turn>{% endfor %}"), std::nullopt);
  EXPECT_EQ(ParseChatFormat("chatml"), ChatFormat::kChatMl);
  EXPECT_EQ(ParseChatFormat("gemma"), std::nullopt);
}

TEST_F(ChatTemplateTest, RefusesConversationsItCannotTrainOnNamingTheLine) {
  auto chat = [&](std::vector<ChatMessage> m) {
    return [m, this] { EncodeChat(ChatFormat::kLlama3, m, *tok_, "'a.jsonl' line 3"); };
  };
  EXPECT_TRUE(ThrowsWith(chat({}), "'a.jsonl' line 3: \"messages\" is empty"));
  EXPECT_TRUE(ThrowsWith(chat({{"user", "a"}, {"bot", "b"}}),
                         "message 1 has the role 'bot' (roles are system, user and assistant)"));
  EXPECT_TRUE(ThrowsWith(chat({{"user", "a"}, {"system", "b"}}),
                         "message 1 is a system message; only the first message may be one"));
  EXPECT_TRUE(ThrowsWith(chat({{"user", "a"}, {"user", "b"}}),
                         "message 1 is a user turn where a assistant turn was expected"));
  EXPECT_TRUE(ThrowsWith(chat({{"user", "a"}}), "has no assistant turn"));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        EncodeChat(ChatFormat::kPlain, {{"user", "a"}, {"assistant", "b"}}, *tok_, "l");
      },
      "the plain format takes prompt/completion examples"));
}

}  // namespace
}  // namespace seqmesh
