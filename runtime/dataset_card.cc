#include "runtime/dataset_card.h"

#include <filesystem>
#include <sstream>

#include "runtime/check.h"
#include "runtime/checkpoint.h"
#include "runtime/files.h"
#include "runtime/json.h"

namespace seqmesh {
namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "seqmesh-dataset/1";

std::string Hex(uint64_t v) {
  char s[17];
  std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(v));
  return s;
}

}  // namespace

std::string TokenizerIdentity::Describe() const {
  std::ostringstream s;
  if (kind == "byte") {
    s << "the byte tokenizer (vocab " << vocab_size << ")";
  } else {
    s << kind << " '" << file << "' (vocab " << vocab_size << ", fnv1a64 " << Hex(fnv1a64) << ")";
  }
  return s.str();
}

TokenizerIdentity IdentifyTokenizer(const std::string& path, const Tokenizer& t) {
  TokenizerIdentity id;
  id.vocab_size = t.vocab_size();
  id.bos = t.bos();
  id.eos = t.eos();
  if (path == "byte") {
    id.kind = "byte";
    return id;
  }
  fs::path file = path;
  if (fs::is_directory(file)) file /= "tokenizer.json";
  const TokenizerIdentity f = IdentifyTokenizerFile(file.string());
  id.kind = f.kind;
  id.file = f.file;
  id.fnv1a64 = f.fnv1a64;
  return id;
}

TokenizerIdentity IdentifyTokenizerFile(const std::string& file) {
  TokenizerIdentity id;
  id.kind = fs::path(file).extension() == ".tiktoken" ? "tiktoken" : "tokenizer.json";
  id.file = fs::path(file).filename().string();
  const MappedFile bytes(file);
  id.fnv1a64 = Fnv1a64(bytes.data(), bytes.size());
  return id;
}

std::string TokenizerFileIn(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "tokenizer.json")) return (fs::path(dir) / "tokenizer.json");
  std::string found;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".tiktoken") found = e.path().string();
  return found;
}

std::string DatasetCardPath(const std::string& prefix) { return prefix + ".dataset.json"; }
std::string LossMaskPrefix(const std::string& prefix) { return prefix + ".loss_mask"; }

void WriteDatasetCard(const std::string& prefix, const DatasetCard& card) {
  const TokenizerIdentity& t = card.tokenizer;
  Json tok = Json::Object();
  tok.Set("kind", Json::String(t.kind));
  tok.Set("file", Json::String(t.file));
  tok.Set("fnv1a64", Json::String(Hex(t.fnv1a64)));
  tok.Set("vocab_size", Json::Integer(t.vocab_size));
  tok.Set("bos", Json::Integer(t.bos));
  tok.Set("eos", Json::Integer(t.eos));
  Json j = Json::Object();
  j.Set("format", Json::String(kFormat));
  j.Set("tokenizer", std::move(tok));
  j.Set("documents", Json::Integer(card.documents));
  j.Set("tokens", Json::Integer(card.tokens));
  j.Set("max_token_id", Json::Integer(card.max_token_id));
  j.Set("loss_mask", Json::Bool(card.loss_mask));
  j.Set("trained_tokens", Json::Integer(card.trained_tokens));
  j.Set("chat_format", Json::String(card.chat_format));
  const std::string text = j.Dump() + "\n";
  WriteFileAtomically(DatasetCardPath(prefix), text.data(), text.size());
}

std::optional<DatasetCard> ReadDatasetCard(const std::string& prefix) {
  const std::string path = DatasetCardPath(prefix);
  if (!fs::exists(path)) return std::nullopt;
  const MappedFile file(path);
  const std::string w = "'" + path + "'";
  const Json j =
      Json::Parse(std::string_view(reinterpret_cast<const char*>(file.data()), file.size()), w);
  const std::string format = j.Require("format", w).AsString(w + " format");
  SM_CHECK(format == kFormat) << w << " format is '" << format << "', not '" << kFormat
                              << "': re-run seqmesh prep to write the dataset again";
  DatasetCard card;
  const Json& t = j.Require("tokenizer", w);
  const std::string tw = w + " tokenizer";
  card.tokenizer.kind = t.Require("kind", tw).AsString(tw + ".kind");
  SM_CHECK(card.tokenizer.kind == "byte" || card.tokenizer.kind == "tiktoken" ||
           card.tokenizer.kind == "tokenizer.json")
      << tw << ".kind '" << card.tokenizer.kind << "' is not one of byte, tiktoken, tokenizer.json";
  card.tokenizer.file = t.Require("file", tw).AsString(tw + ".file");
  const std::string hash = t.Require("fnv1a64", tw).AsString(tw + ".fnv1a64");
  SM_CHECK(hash.size() == 16 && hash.find_first_not_of("0123456789abcdef") == std::string::npos)
      << tw << ".fnv1a64 '" << hash << "' is not 16 lowercase hex digits";
  card.tokenizer.fnv1a64 = std::stoull(hash, nullptr, 16);
  card.tokenizer.vocab_size = t.Require("vocab_size", tw).AsInt(tw + ".vocab_size");
  card.tokenizer.bos = static_cast<int32_t>(t.Require("bos", tw).AsInt(tw + ".bos"));
  card.tokenizer.eos = static_cast<int32_t>(t.Require("eos", tw).AsInt(tw + ".eos"));
  SM_CHECK(card.tokenizer.vocab_size > 0 && card.tokenizer.vocab_size < (int64_t{1} << 31))
      << tw << ".vocab_size " << card.tokenizer.vocab_size << " is out of range";
  card.documents = j.Require("documents", w).AsInt(w + " documents");
  card.tokens = j.Require("tokens", w).AsInt(w + " tokens");
  const int64_t top = j.Require("max_token_id", w).AsInt(w + " max_token_id");
  SM_CHECK(top >= -1 && top < card.tokenizer.vocab_size)
      << w << " max_token_id " << top << " is outside the tokenizer's vocab of "
      << card.tokenizer.vocab_size;
  card.max_token_id = static_cast<int32_t>(top);
  if (const Json* m = j.Find("loss_mask")) card.loss_mask = m->AsBool(w + " loss_mask");
  const Json* trained = j.Find("trained_tokens");
  card.trained_tokens = trained ? trained->AsInt(w + " trained_tokens") : card.tokens;
  if (const Json* f = j.Find("chat_format")) card.chat_format = f->AsString(w + " chat_format");
  return card;
}

}  // namespace seqmesh
