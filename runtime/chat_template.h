// Instruction and chat examples rendered as the model families' chat templates render them, then
// tokenized with a loss mask: the tokens of what the model should learn to say (a completion, an
// assistant turn and its end-of-turn token) are trained, the rest (system and user turns, the
// template's headers) are not.
//
// Formats (docs/TOKENIZERS.md, "Chat data"):
//   llama3  <|begin_of_text|> then per message
//           <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>   (content trimmed)
//   chatml  per message <|im_start|>ROLE\nCONTENT<|im_end|>\n               (Qwen)
//   llama2  <s>[INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ASSISTANT </s> per exchange
//   plain   PROMPT COMPLETION EOS, no markup (prompt/completion examples only)
// A `chat_template` from tokenizer_config.json is recognized by its markers (the header tokens,
// <|im_start|>, [INST]); any other template is refused by name.
//
// The whole conversation is tokenized as one text, as Hugging Face's apply_chat_template does;
// a token belongs to the part where it starts (a token that straddles a boundary belongs to the
// part before it), so where parts meet at special tokens, as in every format above, the mask is
// exact.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer.h"

namespace seqmesh {

enum class ChatFormat { kPlain, kLlama3, kChatMl, kLlama2 };
const char* ChatFormatName(ChatFormat f);
// "plain", "llama3", "chatml", "llama2"; nullopt for anything else.
std::optional<ChatFormat> ParseChatFormat(std::string_view name);
// The format a Jinja chat_template renders, by its markers; nullopt when it is none of them.
std::optional<ChatFormat> DetectChatFormat(std::string_view chat_template);
// tokenizer_config.json's chat_template beside a tokenizer (a tokenizer.json or its folder), or
// "" when there is none.
std::string ReadChatTemplate(const std::string& tokenizer_path);

struct ChatMessage {
  std::string role;  // system, user or assistant
  std::string content;
};

// One tokenized example: ids and, per id, 1 when it is trained on as a next-token target.
struct ChatTokens {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained;
};

// Renders and tokenizes `messages` (a system message first at most, then user and assistant
// turns; at least one assistant turn) in `format`. Errors name `what` (the file and line) and
// the fault: an unknown role, turns out of order, a tokenizer without the format's tokens.
ChatTokens EncodeChat(ChatFormat format, const std::vector<ChatMessage>& messages,
                      const Tokenizer& tokenizer, const std::string& what);
// A prompt/completion example: plain renders PROMPT COMPLETION EOS (the tokenizer's document
// prefix first); the chat formats render it as one user and one assistant turn.
ChatTokens EncodeCompletion(ChatFormat format, const std::string& prompt,
                            const std::string& completion, const Tokenizer& tokenizer,
                            const std::string& what);

}  // namespace seqmesh
