// `seqmesh prep`: text or JSONL files to a Megatron indexed dataset.
//
//   seqmesh prep --output data/docs [--tokenizer byte|FILE|DIR] [--jsonl] [--no-eos]
//                [--max-length L] [--threads N] FILE...
//   seqmesh prep --chat [--chat-template auto|llama3|chatml|llama2|plain] --tokenizer DIR
//                --output data/sft FILE.jsonl...
//
// --tokenizer takes a tokenizer.json (or a Hugging Face model directory holding one, with its
// tokenizer_config.json for BOS/EOS) or a .tiktoken rank file; the default is the byte tokenizer.
// The token dtype follows Megatron's rule (uint16 below 65,500 ids, else int32). Each document is
// the tokenizer's own prefix (Llama's BOS), the text's ids, and EOS (unless --no-eos, like
// Megatron's --append-eod). PREFIX.dataset.json records the tokenizer (runtime/dataset_card.h), so
// that `train` and `launch` refuse a model whose vocabulary is not the one the ids came from.
//
// --max-length L cuts every document into consecutive pieces of at most L tokens, each a
// document of its own, and reports how many were cut: an HDP job refuses a sequence longer than
// its ranks can hold (ranks x capacity), so the cut is made, and counted, here.
// A text file is one document; a JSONL file holds one document per line in its "text" field. A
// directory stands for every regular file below it (sorted, so the output is reproducible).
// Documents are tokenized by --threads threads in batches and written in input order: the output
// is the same for every thread count.
//
// --chat reads JSON lines holding "messages" ([{"role", "content"}, ...]) or "prompt" and
// "completion", renders each with a chat template (runtime/chat_template.h; auto: the one
// tokenizer_config.json names, or plain for prompt/completion examples when it names none) and
// writes PREFIX.loss_mask.bin/.idx beside the tokens: 1 for each token trained on (completions,
// assistant turns), 0 for the prompt. The card records the mask and the format.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <span>
#include <sstream>
#include <thread>

#include "launch/command.h"
#include "launch/flags.h"
#include "runtime/chat_template.h"
#include "runtime/check.h"
#include "runtime/dataset_card.h"
#include "runtime/indexed_dataset.h"
#include "runtime/json.h"
#include "runtime/tokenizer.h"

namespace seqmesh::launch {
namespace {

struct PrepOptions {
  std::string output, tokenizer = "byte";
  bool jsonl = false, eos = true, chat = false;
  std::string chat_template = "auto";
  int64_t max_length = 0, threads = 1;
  std::vector<std::string> files;  // folders expanded
};

struct PrepStats {
  int64_t bytes = 0, docs = 0, tokens = 0, cut = 0;
  int64_t trained = 0;  // next-token targets trained on (with --chat)
  TokenDType dtype = TokenDType::kU16;
  TokenizerIdentity tokenizer;
  std::string chat_format;
};

// Megatron's DType.optimal_dtype: uint16 for a vocabulary under 65,500 ids, else int32.
TokenDType TokenDTypeFor(int64_t vocab_size) {
  return vocab_size < 65500 ? TokenDType::kU16 : TokenDType::kI32;
}

struct Doc {
  std::string text;   // the document, or with --chat its JSON line
  std::string where;  // "'file' line N" (JSONL)
};

// Reads the documents of `files` in order and hands them to `batch` in groups of about 32 MB.
template <typename Batch>
void ForEachBatch(const PrepOptions& o, Batch batch) {
  constexpr size_t kBatchBytes = size_t{32} << 20;
  std::vector<Doc> texts;
  size_t held = 0;
  auto add = [&](std::string text, std::string where) {
    held += text.size();
    texts.push_back({std::move(text), std::move(where)});
    if (held >= kBatchBytes) batch(texts), texts.clear(), held = 0;
  };
  for (const std::string& path : o.files) {
    std::ifstream in(path, std::ios::binary);
    SM_CHECK(in.good()) << "cannot read '" << path << "'";
    if (!o.jsonl && !o.chat) {
      std::stringstream ss;
      ss << in.rdbuf();
      add(ss.str(), "'" + path + "'");
      continue;
    }
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      std::string where = "'" + path + "' line " + std::to_string(n);
      if (o.chat) {  // parsed by the tokenizing threads
        add(std::move(line), std::move(where));
        continue;
      }
      const Json j = Json::Parse(line, where);
      const Json* text = j.Find("text");
      SM_CHECK(text != nullptr) << where << " has no \"text\" field";
      add(text->AsString(where + " text"), std::move(where));
    }
  }
  if (!texts.empty()) batch(texts);
}

// The chat format of --chat-template (auto: the tokenizer's chat_template, by its markers).
ChatFormat ChooseChatFormat(const PrepOptions& o) {
  if (o.chat_template != "auto") {
    const std::optional<ChatFormat> f = ParseChatFormat(o.chat_template);
    SM_CHECK(f) << "--chat-template '" << o.chat_template
                << "' is not one of auto, llama3, chatml, llama2, plain";
    return *f;
  }
  const std::string jinja = o.tokenizer == "byte" ? "" : ReadChatTemplate(o.tokenizer);
  if (jinja.empty()) return ChatFormat::kPlain;  // prompt/completion only; messages are refused
  const std::optional<ChatFormat> f = DetectChatFormat(jinja);
  SM_CHECK(f) << "the chat_template in the tokenizer_config.json beside '" << o.tokenizer
              << "' is not one seqmesh renders (llama3, chatml, llama2: docs/TOKENIZERS.md): "
              << "pass --chat-template NAME for the format it is closest to";
  return *f;
}

// One chat example (a JSON line) as tokens and loss mask.
ChatTokens EncodeExample(const Doc& doc, ChatFormat format, const Tokenizer& tok) {
  const Json j = Json::Parse(doc.text, doc.where);
  if (const Json* messages = j.Find("messages")) {
    std::vector<ChatMessage> turns;
    const auto& items = messages->AsArray(doc.where + " messages");
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string w = doc.where + " messages[" + std::to_string(i) + "]";
      turns.push_back({items[i].Require("role", w).AsString(w + ".role"),
                       items[i].Require("content", w).AsString(w + ".content")});
    }
    return EncodeChat(format, turns, tok, doc.where);
  }
  const Json* prompt = j.Find("prompt");
  const Json* completion = j.Find("completion");
  SM_CHECK(prompt && completion) << doc.where << " has neither \"messages\" nor \"prompt\" and "
                                 << "\"completion\"";
  return EncodeCompletion(format, prompt->AsString(doc.where + " prompt"),
                          completion->AsString(doc.where + " completion"), tok, doc.where);
}

PrepStats Prep(const PrepOptions& o) {
  const std::unique_ptr<Tokenizer> tok = LoadTokenizer(o.tokenizer);
  PrepStats stats;
  stats.tokenizer = IdentifyTokenizer(o.tokenizer, *tok);
  stats.dtype = TokenDTypeFor(tok->vocab_size());
  SM_CHECK(!o.eos || o.chat || tok->eos() >= 0)
      << "the tokenizer '" << o.tokenizer << "' has no EOS token: pass --no-eos";
  const ChatFormat format = o.chat ? ChooseChatFormat(o) : ChatFormat::kPlain;
  if (o.chat) stats.chat_format = ChatFormatName(format);
  const std::vector<int32_t> prefix = tok->DocumentPrefix();
  IndexedDatasetWriter writer(o.output, stats.dtype);
  std::optional<IndexedDatasetWriter> mask_writer;
  if (o.chat) mask_writer.emplace(LossMaskPrefix(o.output), TokenDType::kU8);
  int32_t max_id = -1;
  std::vector<ChatTokens> docs;
  std::vector<int32_t> mask_piece;
  ForEachBatch(o, [&](const std::vector<Doc>& texts) {
    // Encode in parallel: each thread takes the next document; the results keep their order.
    docs.assign(texts.size(), {});
    std::atomic<size_t> next{0};
    std::exception_ptr failure;
    std::atomic<bool> failed{false};
    auto work = [&] {
      try {
        for (size_t i; !failed && (i = next++) < texts.size();) {
          if (o.chat) {
            docs[i] = EncodeExample(texts[i], format, *tok);
            continue;
          }
          docs[i].ids = prefix;
          tok->Encode(texts[i].text, docs[i].ids);
          if (o.eos) docs[i].ids.push_back(tok->eos());
        }
      } catch (...) {
        if (!failed.exchange(true)) failure = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    const size_t n_threads = std::min<size_t>(o.threads, texts.size());
    for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
    if (failure) std::rethrow_exception(failure);
    for (size_t i = 0; i < texts.size(); ++i) {
      stats.bytes += static_cast<int64_t>(texts[i].text.size());
      const ChatTokens& doc = docs[i];
      if (doc.ids.empty()) continue;
      for (const int32_t id : doc.ids) max_id = std::max(max_id, id);
      const int64_t n = static_cast<int64_t>(doc.ids.size());
      const int64_t piece = o.max_length > 0 ? o.max_length : n;
      if (n > piece) ++stats.cut;
      for (int64_t begin = 0; begin < n; begin += piece) {
        const int64_t count = std::min(piece, n - begin);
        writer.Add(std::span<const int32_t>(doc.ids.data() + begin, count));
        if (mask_writer) {
          mask_piece.assign(doc.trained.begin() + begin, doc.trained.begin() + begin + count);
          mask_writer->Add(mask_piece);
          for (int64_t k = 1; k < count; ++k) stats.trained += mask_piece[k];
        }
        ++stats.docs;
      }
      stats.tokens += n;
    }
  });
  writer.Finish();
  if (mask_writer) mask_writer->Finish();
  DatasetCard card;
  card.tokenizer = stats.tokenizer;
  card.documents = stats.docs;
  card.tokens = stats.tokens;
  card.max_token_id = max_id;
  card.loss_mask = o.chat;
  card.trained_tokens = o.chat ? stats.trained : stats.tokens - stats.docs;
  card.chat_format = stats.chat_format;
  WriteDatasetCard(o.output, card);
  return stats;
}

}  // namespace

int RunPrep(const Args& args) {
  PrepOptions o;
  std::vector<std::string> inputs;
  o.threads = std::max(1u, std::thread::hardware_concurrency());
  FlagParser flags("prep", "tokenize text or JSONL files into a Megatron indexed dataset",
                   "seqmesh prep --max-length 4096 --output data/example/hdp data/example/text");
  flags
      .String("--output", "PREFIX", &o.output,
              "write PREFIX.bin, PREFIX.idx and PREFIX.dataset.json", Required::kYes)
      .String("--tokenizer", "PATH", &o.tokenizer,
              "byte (the default), a tokenizer.json or a folder holding one, or a .tiktoken file")
      .Switch("--jsonl", &o.jsonl, "the inputs are JSON lines with a \"text\" field")
      .Switch("--chat", &o.chat,
              "the inputs are JSON lines of \"messages\" or \"prompt\"/\"completion\": "
              "write a loss mask that trains only the completions")
      .String("--chat-template", "NAME", &o.chat_template,
              "auto (the tokenizer's chat_template), llama3, chatml, llama2 or plain")
      .Unset("--no-eos", &o.eos, "do not end each document with the EOS token")
      .Int("--max-length", "L", &o.max_length,
           "cut documents into pieces of at most L tokens (0: never cut)", 2)
      .Int("--threads", "N", &o.threads, "tokenize with N threads (default: one per core)", 1)
      .Positional("FILE", &inputs, "text or JSONL files, or folders of them", Required::kYes);
  if (!flags.Parse(args)) return 0;
  for (const std::string& in : inputs) {
    if (!std::filesystem::is_directory(in)) {
      o.files.push_back(in);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::recursive_directory_iterator(in))
      if (e.is_regular_file()) found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    o.files.insert(o.files.end(), found.begin(), found.end());
  }
  // Never write over an input: the outputs are replaced wholesale.
  for (const std::string& out : std::vector<std::string>{
           o.output + ".bin", o.output + ".idx", DatasetCardPath(o.output),
           LossMaskPrefix(o.output) + ".bin", LossMaskPrefix(o.output) + ".idx"}) {
    std::vector<std::string> read = o.files;
    read.push_back(std::filesystem::is_directory(o.tokenizer)
                       ? (std::filesystem::path(o.tokenizer) / "tokenizer.json").string()
                       : o.tokenizer);
    for (const std::string& in : read)
      SM_CHECK(!std::filesystem::exists(in) || !std::filesystem::exists(out) ||
               !std::filesystem::equivalent(in, out))
          << "--output " << o.output << " would overwrite the input '" << in
          << "': choose another output prefix";
  }
  const auto start = std::chrono::steady_clock::now();
  const PrepStats s = Prep(o);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "prep: " << s.docs << " documents, " << s.tokens << " tokens -> " << o.output
            << ".bin/.idx/.dataset.json (" << s.tokenizer.Describe() << ", "
            << (s.dtype == TokenDType::kU16 ? "uint16" : "int32") << " ids)";
  if (o.chat)
    std::cout << "; " << s.chat_format << " chat format, " << s.trained << " tokens trained on ("
              << LossMaskPrefix(o.output) << ".bin/.idx)";
  if (o.max_length > 0)
    std::cout << "; " << s.cut << " documents longer than " << o.max_length << " tokens were cut";
  std::cout << "\n"
            << "prep_mb_per_s: " << s.bytes / 1e6 / secs << "  (" << s.bytes / 1e6
            << " MB of text in " << secs << " s on " << o.threads
            << " threads, reading, tokenizing and writing included)\n";
  return 0;
}

}  // namespace seqmesh::launch
