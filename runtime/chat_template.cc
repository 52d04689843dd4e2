#include "runtime/chat_template.h"

#include <algorithm>
#include <filesystem>

#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/json.h"

namespace seqmesh {
namespace {

struct Part {
  std::string text;
  bool trained;
};

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// The tokenizer must hold each marker as one token (else the template would be spelled out in
// ordinary tokens, which the model never saw).
void RequireTokens(const Tokenizer& t, ChatFormat f, std::initializer_list<const char*> tokens,
                   const std::string& what) {
  for (const char* token : tokens)
    SM_CHECK(t.TokenId(token) >= 0)
        << what << ": the " << ChatFormatName(f) << " chat format needs the token '" << token
        << "', which the tokenizer does not have: pass the --chat-template of the model's family";
}

// Tokenizes the parts as one text after `prefix` and marks each token with the flag of the part
// it starts in: at each boundary, the tokens the text before it shares with the whole text are
// before it, and the first token after those starts before the boundary when the text before it
// has more tokens (it straddles the boundary), else at the boundary.
ChatTokens EncodeParts(const std::vector<Part>& parts, const Tokenizer& t,
                       const std::vector<int32_t>& prefix) {
  std::string full;
  for (const Part& p : parts) full += p.text;
  ChatTokens out;
  out.ids = prefix;
  t.Encode(full, out.ids);
  out.trained.assign(out.ids.size(), 0);
  std::vector<int32_t> before;
  // The index of the first token that starts at or after char offset `offset` of `full`.
  auto first_token_from = [&](size_t offset) {
    before.clear();
    t.Encode(std::string_view(full).substr(0, offset), before);
    size_t k = 0;
    while (k < before.size() && prefix.size() + k < out.ids.size() &&
           before[k] == out.ids[prefix.size() + k])
      ++k;
    return std::min(out.ids.size(), prefix.size() + k + (k < before.size() ? 1 : 0));
  };
  size_t offset = 0, first = prefix.size();
  for (size_t i = 0; i < parts.size(); offset += parts[i].text.size(), ++i) {
    if (!parts[i].trained) continue;
    if (i > 0 && !parts[i - 1].trained) first = std::max(first, first_token_from(offset));
    size_t last = out.ids.size();
    if (i + 1 < parts.size() && !parts[i + 1].trained)
      last = std::max(first, first_token_from(offset + parts[i].text.size()));
    for (size_t j = first; j < last; ++j) out.trained[j] = 1;
    first = last;
  }
  return out;
}

// Checks the turns: an optional system message first, then user and assistant alternating from
// a user turn, with at least one assistant turn.
void CheckTurns(const std::vector<ChatMessage>& messages, const std::string& what) {
  SM_CHECK(!messages.empty()) << what << ": \"messages\" is empty";
  bool assistant = false;
  size_t k = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    SM_CHECK(role == "system" || role == "user" || role == "assistant")
        << what << ": message " << i << " has the role '" << role
        << "' (roles are system, user and assistant)";
    if (role == "system") {
      SM_CHECK(i == 0) << what << ": message " << i
                       << " is a system message; only the first message may be one";
      continue;
    }
    const char* want = k % 2 == 0 ? "user" : "assistant";
    SM_CHECK(role == want) << what << ": message " << i << " is a " << role << " turn where a "
                           << want << " turn was expected (turns alternate, starting with user)";
    assistant = assistant || role == "assistant";
    ++k;
  }
  SM_CHECK(assistant) << what << ": the conversation has no assistant turn, so nothing in it is "
                      << "trained on";
}

}  // namespace

const char* ChatFormatName(ChatFormat f) {
  switch (f) {
    case ChatFormat::kPlain:
      return "plain";
    case ChatFormat::kLlama3:
      return "llama3";
    case ChatFormat::kChatMl:
      return "chatml";
    case ChatFormat::kLlama2:
      return "llama2";
  }
  return "?";
}

std::optional<ChatFormat> ParseChatFormat(std::string_view name) {
  for (ChatFormat f :
       {ChatFormat::kPlain, ChatFormat::kLlama3, ChatFormat::kChatMl, ChatFormat::kLlama2})
    if (name == ChatFormatName(f)) return f;
  return std::nullopt;
}

std::optional<ChatFormat> DetectChatFormat(std::string_view t) {
  if (t.find("<|start_header_id|>") != std::string_view::npos &&
      t.find("<|eot_id|>") != std::string_view::npos)
    return ChatFormat::kLlama3;
  if (t.find("<|im_start|>") != std::string_view::npos) return ChatFormat::kChatMl;
  if (t.find("[INST]") != std::string_view::npos) return ChatFormat::kLlama2;
  return std::nullopt;
}

std::string ReadChatTemplate(const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::is_directory(tokenizer_path) ? fs::path(tokenizer_path)
                                                        : fs::path(tokenizer_path).parent_path();
  const fs::path config = dir / "tokenizer_config.json";
  if (!fs::exists(config)) return "";
  const MappedFile f(config.string());
  const std::string w = "'" + config.string().append("'");
  const Json j =
      Json::Parse(std::string_view(reinterpret_cast<const char*>(f.data()), f.size()), w);
  const Json* t = j.Find("chat_template");
  if (!t || t->is_null()) return "";
  if (t->is_string()) return t->AsString(w + " chat_template");
  // A list of named templates: the "default" one.
  for (const Json& item : t->AsArray(w + " chat_template"))
    if (item.Require("name", w).AsString(w + " chat_template name") == "default")
      return item.Require("template", w).AsString(w + " chat_template template");
  SM_CHECK(false) << w << " chat_template lists no \"default\" template";
  return "";
}

ChatTokens EncodeChat(ChatFormat format, const std::vector<ChatMessage>& messages,
                      const Tokenizer& t, const std::string& what) {
  CheckTurns(messages, what);
  std::vector<Part> parts;
  switch (format) {
    case ChatFormat::kPlain:
      SM_CHECK(false) << what << ": the plain format takes prompt/completion examples; pass "
                      << "--chat-template llama3, chatml or llama2 for \"messages\"";
      break;
    case ChatFormat::kLlama3:
      RequireTokens(t, format,
                    {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
                    what);
      parts.push_back({"<|begin_of_text|>", false});
      for (const ChatMessage& m : messages) {
        const bool a = m.role == "assistant";
        parts.push_back({"<|start_header_id|>" + m.role + "<|end_header_id|>\n\n", false});
        parts.push_back({Trim(m.content) + "<|eot_id|>", a});
      }
      break;
    case ChatFormat::kChatMl:
      RequireTokens(t, format, {"<|im_start|>", "<|im_end|>"}, what);
      for (const ChatMessage& m : messages) {
        const bool a = m.role == "assistant";
        parts.push_back({"<|im_start|>" + m.role + "\n", false});
        parts.push_back({m.content + "<|im_end|>", a});
        parts.push_back({"\n", false});
      }
      break;
    case ChatFormat::kLlama2: {
      RequireTokens(t, format, {"<s>", "</s>"}, what);
      std::string system;
      for (const ChatMessage& m : messages) {
        if (m.role == "system") {
          system = "<<SYS>>\n" + Trim(m.content) + "\n<</SYS>>\n\n";
        } else if (m.role == "user") {
          parts.push_back({"<s>[INST] " + system + Trim(m.content) + " [/INST]", false});
          system.clear();
        } else {
          parts.push_back({" " + Trim(m.content).append(" </s>"), true});
        }
      }
      break;
    }
  }
  return EncodeParts(parts, t, {});
}

ChatTokens EncodeCompletion(ChatFormat format, const std::string& prompt,
                            const std::string& completion, const Tokenizer& t,
                            const std::string& what) {
  if (format != ChatFormat::kPlain)
    return EncodeChat(format, {{"user", prompt}, {"assistant", completion}}, t, what);
  SM_CHECK(t.eos() >= 0) << what << ": the tokenizer has no EOS token to end the completion";
  ChatTokens out = EncodeParts({{prompt, false}, {completion, true}}, t, t.DocumentPrefix());
  out.ids.push_back(t.eos());
  out.trained.push_back(1);
  return out;
}

}  // namespace seqmesh
