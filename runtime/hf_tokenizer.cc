#include "runtime/hf_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "runtime/check.h"
#include "runtime/hf_tokenizer_pipeline.h"
#include "runtime/json.h"
#include "runtime/piece_cache.h"
#include "runtime/text.h"

namespace seqmesh {
namespace {

using Vocab = StringMap<int32_t>;

}  // namespace

using hf::AddedMatcher;
using hf::AddedToken;
using hf::OptBool;
using hf::OptString;
using hf::Where;

struct HfTokenizer::Impl {
  std::string file;
  std::vector<hf::NormOp> normalizer;
  std::vector<hf::PreOp> pre_tokenizer;
  std::vector<hf::DecodeOp> decoder;
  bool has_decoder = false;

  // The BPE model.
  Vocab vocab;                                                       // model tokens
  std::vector<std::string> id_to_token;                              // model and added tokens by id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) -> (rank, id)
  int32_t unk = -1;
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::string prefix, suffix;  // continuing_subword_prefix, end_of_word_suffix
  int32_t byte_token[256];     // <0xNN>, or -1

  std::vector<AddedToken> added;
  std::unordered_map<int32_t, const AddedToken*> added_by_id;
  AddedMatcher raw_matcher, normalized_matcher;
  PieceCache cache;  // the ids of pieces merged, per thread
  std::vector<int32_t> prefix_ids, suffix_ids;
  int32_t bos = -1, eos = -1, pad = -1;

  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  // An added token's id, else the model's; -1 for neither.
  int32_t IdOf(std::string_view token) const {
    for (const AddedToken& a : added)
      if (a.content == token) return a.id;
    const auto it = vocab.find(token);
    return it == vocab.end() ? -1 : it->second;
  }

  void Normalize(std::string& s) const {
    for (const hf::NormOp& op : normalizer) op.Apply(s);
  }

  void MergeWord(std::string_view w, std::vector<int32_t>& out) const;
  void Model(std::string_view piece, std::vector<int32_t>& out) const;
  void EncodeSegment(std::string text, bool at_start, std::vector<int32_t>& out) const;
};

// The library's BPE::merge_word and Word::merge_all: characters (or their byte tokens, or unk),
// then a queue of merges ordered by rank and position, stale entries skipped.
void HfTokenizer::Impl::MergeWord(std::string_view w, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int prev, next;
    size_t len;
  };
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  auto add = [&](int32_t id, size_t len) {
    const int n = static_cast<int>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, len});
  };
  int32_t unk_id = -1;  // an unknown character not yet added (fuse_unk grows it)
  size_t unk_len = 0;
  std::string s;
  size_t len = 0;
  for (size_t i = 0; i < w.size(); i += len) {
    CodePointAt(w, i, &len);
    s.assign(w.substr(i, len));
    if (i > 0 && !prefix.empty()) s.insert(0, prefix);
    if (i + len >= w.size() && !suffix.empty()) s += suffix;
    if (const auto it = vocab.find(s); it != vocab.end()) {
      if (unk_id >= 0) add(unk_id, unk_len), unk_id = -1;
      add(it->second, len);
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (const char c : s) all = all && byte_token[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        // (the library adds these without flushing a pending unk first)
        for (const char c : s) add(byte_token[static_cast<unsigned char>(c)], 1);
        continue;
      }
    }
    if (unk >= 0) {
      if (unk_id >= 0 && fuse_unk) {
        unk_len += len;
      } else {
        if (unk_id >= 0) add(unk_id, unk_len);
        unk_id = unk;
        unk_len = len;
      }
    }
  }
  if (unk_id >= 0) add(unk_id, unk_len);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Merge {
    int pos;
    int32_t rank, id;
    bool operator<(const Merge& o) const {  // the queue's top: lowest rank, then leftmost
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  thread_local std::vector<Merge> queue;  // a heap, reused across words
  queue.clear();
  auto push = [&](Merge m) {
    queue.push_back(m);
    std::push_heap(queue.begin(), queue.end());
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    if (const auto it = merges.find(Key(symbols[i].id, symbols[i + 1].id)); it != merges.end())
      push({static_cast<int>(i), it->second.first, it->second.second});
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end());
    const Merge top = queue.back();
    queue.pop_back();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const Symbol right = symbols[cur.next];
    const auto it = merges.find(Key(cur.id, right.id));
    if (it == merges.end() || it->second.second != top.id) continue;
    symbols[cur.next].len = 0;
    cur.id = top.id;
    cur.len += right.len;
    cur.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0)
      if (const auto m = merges.find(Key(symbols[cur.prev].id, cur.id)); m != merges.end())
        push({cur.prev, m->second.first, m->second.second});
    if (cur.next >= 0)
      if (const auto m = merges.find(Key(cur.id, symbols[cur.next].id)); m != merges.end())
        push({top.pos, m->second.first, m->second.second});
  }
  for (const Symbol& sym : symbols)
    if (sym.len > 0) out.push_back(sym.id);
}

void HfTokenizer::Impl::Model(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges)
    if (const auto it = vocab.find(piece); it != vocab.end()) return out.push_back(it->second);
  cache.Ids(piece, out, [this](std::string_view p, std::vector<int32_t>& o) { MergeWord(p, o); });
}

void HfTokenizer::Impl::EncodeSegment(std::string text, bool at_start,
                                      std::vector<int32_t>& out) const {
  Normalize(text);
  std::vector<AddedMatcher::Seg> mine;
  normalized_matcher.Find(text, mine);
  for (const AddedMatcher::Seg& seg : mine) {
    if (seg.token) {
      out.push_back(seg.token->id);
      continue;
    }
    std::vector<hf::Piece> pieces{
        {text.substr(seg.begin, seg.end - seg.begin), at_start && seg.begin == 0}};
    for (const hf::PreOp& op : pre_tokenizer) op.Apply(pieces);
    for (const hf::Piece& p : pieces) Model(p.text, out);
  }
}

// ---- loading ----

namespace {

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SM_CHECK(in) << "cannot read '" << path << "'";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// tokenizer_config.json's token fields: a string, or {"content": ...}, or null.
std::string ConfigToken(const Json& config, const std::string& key, const std::string& what) {
  const Json* f = config.Find(key);
  if (!f || f->is_null()) return "";
  if (f->is_string()) return f->AsString(what + "." + key);
  return f->Require("content", what + "." + key).AsString(what + "." + key + ".content");
}

}  // namespace

HfTokenizer::HfTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HfTokenizer::~HfTokenizer() = default;

std::unique_ptr<HfTokenizer> HfTokenizer::Load(const std::string& path_in) {
  std::string path = path_in;
  if (std::filesystem::is_directory(path)) path = (std::filesystem::path(path) / "tokenizer.json");
  auto t = std::make_unique<Impl>();
  t->file = path;
  const Json root = Json::Parse(ReadText(path), path);
  SM_CHECK(root.is_object()) << "'" << path << "' is not a JSON object (a tokenizer.json)";
  const Json* trunc = root.Find("truncation");
  SM_CHECK(!trunc || trunc->is_null())
      << Where(path, "truncation") << " is set: seqmesh cuts documents itself "
      << "(prep --max-length); remove it from the file";

  const Json& model = root.Require("model", "'" + path + "'");
  const std::string mw = Where(path, "model");
  const std::string type = OptString(model, "type", mw);
  SM_CHECK(type == "BPE" || (type.empty() && model.Find("merges")))
      << mw << ": the model '" << type << "' is not supported (only BPE models are)";
  const Json* dropout = model.Find("dropout");
  SM_CHECK(!dropout || dropout->is_null() || dropout->AsDouble(mw + ".dropout") == 0)
      << mw << ".dropout is set: BPE dropout is a training-time augmentation seqmesh does not "
      << "apply; set it to null";
  t->byte_fallback = OptBool(model, "byte_fallback", false, mw);
  t->fuse_unk = OptBool(model, "fuse_unk", false, mw);
  t->ignore_merges = OptBool(model, "ignore_merges", false, mw);
  t->prefix = OptString(model, "continuing_subword_prefix", mw);
  t->suffix = OptString(model, "end_of_word_suffix", mw);
  int32_t max_id = -1;
  for (const auto& [token, id_json] : model.Require("vocab", mw).AsObject(mw + ".vocab")) {
    const int64_t id = id_json.AsInt(mw + ".vocab[\"" + token + "\"]");
    SM_CHECK(id >= 0 && id < (1 << 30)) << mw << ".vocab: '" << token << "' has the id " << id;
    t->vocab.emplace(token, static_cast<int32_t>(id));
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  t->id_to_token.resize(max_id + 1);
  for (const auto& [token, id] : t->vocab) t->id_to_token[id] = token;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const auto it = t->vocab.find(std::string_view(name));
    t->byte_token[b] = it == t->vocab.end() ? -1 : it->second;
  }
  if (const std::string unk = OptString(model, "unk_token", mw); !unk.empty()) {
    const auto it = t->vocab.find(unk);
    SM_CHECK(it != t->vocab.end()) << mw << ".unk_token '" << unk << "' is not in the vocab";
    t->unk = it->second;
  }
  const auto& merges = model.Require("merges", mw).AsArray(mw + ".merges");
  t->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string w = mw + ".merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (merges[i].is_string()) {  // "a b"
      const std::string& m = merges[i].AsString(w);
      const size_t space = m.find(' ');
      SM_CHECK(space != std::string::npos && m.find(' ', space + 1) == std::string::npos)
          << w << " '" << m << "' is not two tokens separated by one space";
      a = m.substr(0, space);
      b = m.substr(space + 1);
    } else {  // ["a", "b"]
      const auto& pair = merges[i].AsArray(w);
      SM_CHECK(pair.size() == 2) << w << " is not a pair of tokens";
      a = pair[0].AsString(w);
      b = pair[1].AsString(w);
    }
    const auto ia = t->vocab.find(a), ib = t->vocab.find(b);
    SM_CHECK(ia != t->vocab.end() && ib != t->vocab.end())
        << w << ": '" << (ia == t->vocab.end() ? a : b) << "' is not in the vocab";
    SM_CHECK(b.compare(0, t->prefix.size(), t->prefix) == 0 || t->prefix.empty())
        << w << ": '" << b << "' lacks the continuing_subword_prefix";
    const std::string joined = a + b.substr(t->prefix.size());
    const auto ij = t->vocab.find(joined);
    SM_CHECK(ij != t->vocab.end())
        << w << ": the merged token '" << joined << "' is not in the vocab";
    t->merges.emplace(Impl::Key(ia->second, ib->second),
                      std::make_pair(static_cast<int32_t>(i), ij->second));
  }

  if (const Json* n = root.Find("normalizer"))
    hf::ReadNormalizer(*n, Where(path, "normalizer"), t->normalizer);
  if (const Json* p = root.Find("pre_tokenizer"))
    hf::ReadPreTokenizer(*p, Where(path, "pre_tokenizer"), t->pre_tokenizer);
  if (const Json* d = root.Find("decoder"); d && !d->is_null()) {
    hf::ReadDecoder(*d, Where(path, "decoder"), t->decoder);
    t->has_decoder = true;
  }
  if (const Json* a = root.Find("added_tokens")) {
    const auto& items = a->AsArray(Where(path, "added_tokens"));
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string w = Where(path, "added_tokens[" + std::to_string(i) + "]");
      AddedToken tok;
      tok.id = static_cast<int32_t>(items[i].Require("id", w).AsInt(w + ".id"));
      SM_CHECK(tok.id >= 0 && tok.id < (1 << 30)) << w << ".id " << tok.id << " is out of range";
      tok.content = items[i].Require("content", w).AsString(w + ".content");
      tok.special = OptBool(items[i], "special", false, w);
      tok.normalized = OptBool(items[i], "normalized", !tok.special, w);
      tok.lstrip = OptBool(items[i], "lstrip", false, w);
      tok.rstrip = OptBool(items[i], "rstrip", false, w);
      tok.single_word = OptBool(items[i], "single_word", false, w);
      tok.match = tok.content;
      if (tok.normalized) t->Normalize(tok.match);
      t->added.push_back(std::move(tok));
    }
  }
  for (const AddedToken& tok : t->added) {
    if (static_cast<size_t>(tok.id) >= t->id_to_token.size()) t->id_to_token.resize(tok.id + 1);
    t->id_to_token[tok.id] = tok.content;
    t->added_by_id[tok.id] = &tok;
  }
  t->raw_matcher.Build(t->added, false);
  t->normalized_matcher.Build(t->added, true);
  if (const Json* p = root.Find("post_processor"))
    hf::ReadPostProcessor(*p, Where(path, "post_processor"), t->prefix_ids, t->suffix_ids);

  // BOS, EOS and PAD.
  auto id_of = [&](const std::string& token, const std::string& what) {
    if (token.empty()) return -1;
    const int32_t id = t->IdOf(token);
    SM_CHECK(id >= 0) << what << ": '" << token << "' is not a token of '" << path << "'";
    return id;
  };
  const std::string config_path =
      (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  std::string bos, eos, pad;
  if (std::filesystem::exists(config_path)) {
    const Json config = Json::Parse(ReadText(config_path), config_path);
    bos = ConfigToken(config, "bos_token", "'" + config_path + "'");
    eos = ConfigToken(config, "eos_token", "'" + config_path + "'");
    pad = ConfigToken(config, "pad_token", "'" + config_path + "'");
    t->bos = id_of(bos, "'" + config_path + "' bos_token");
    t->eos = id_of(eos, "'" + config_path + "' eos_token");
    t->pad = id_of(pad, "'" + config_path + "' pad_token");
  }
  if (bos.empty() && !t->prefix_ids.empty()) t->bos = t->prefix_ids.front();
  if (eos.empty())  // the end-of-text tokens of the families supported, in that order
    for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "<eos>"})
      if ((t->eos = t->IdOf(name)) >= 0) break;
  SM_CHECK(t->eos >= 0) << "'" << path << "' has no end-of-text token (</s>, <|end_of_text|>, "
                        << "<|endoftext|>, <|im_end|> or <eos>): put a tokenizer_config.json "
                        << "with eos_token beside it";
  if (t->pad < 0) t->pad = t->eos;
  return std::unique_ptr<HfTokenizer>(new HfTokenizer(std::move(t)));
}

int64_t HfTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_to_token.size()); }
int32_t HfTokenizer::bos() const { return impl_->bos; }
int32_t HfTokenizer::eos() const { return impl_->eos; }
int32_t HfTokenizer::pad() const { return impl_->pad; }
const std::vector<int32_t>& HfTokenizer::template_prefix() const { return impl_->prefix_ids; }
const std::vector<int32_t>& HfTokenizer::template_suffix() const { return impl_->suffix_ids; }

int32_t HfTokenizer::TokenId(std::string_view token) const { return impl_->IdOf(token); }

bool HfTokenizer::IsSpecial(int32_t id) const {
  const auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && it->second->special;
}

void HfTokenizer::Encode(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<AddedMatcher::Seg> segs;
  impl_->raw_matcher.Find(text, segs);
  for (const AddedMatcher::Seg& seg : segs) {
    if (seg.token) {
      out.push_back(seg.token->id);
    } else {
      impl_->EncodeSegment(std::string(text.substr(seg.begin, seg.end - seg.begin)), seg.begin == 0,
                           out);
    }
  }
}

std::string HfTokenizer::Decode(std::span<const int32_t> ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    SM_CHECK(id >= 0 && static_cast<size_t>(id) < impl_->id_to_token.size() &&
             !impl_->id_to_token[id].empty())
        << "token id " << id << " at position " << i << " is not in '" << impl_->file << "'";
    if (IsSpecial(id)) continue;
    tokens.push_back(impl_->id_to_token[id]);
  }
  if (!impl_->has_decoder) {  // the library joins the tokens with spaces
    std::string s;
    for (size_t i = 0; i < tokens.size(); ++i) s += (i ? " " : "") + tokens[i];
    return s;
  }
  for (const hf::DecodeOp& op : impl_->decoder) op.Apply(tokens);
  std::string s;
  for (const std::string& t : tokens) s += t;
  return s;
}

}  // namespace seqmesh
