#include "launch/generate.h"

#include <algorithm>

#include "launch/hf_model.h"
#include "runtime/check.h"
#include "runtime/text.h"

namespace seqmesh::launch {

Json GenerateResult::ToJson() const {
  auto ints = [](const std::vector<int32_t>& v) {
    std::vector<Json> items;
    for (int32_t x : v) items.push_back(Json::Integer(x));
    return Json::Array(std::move(items));
  };
  Json j = Json::Object();
  j.Set("text", Json::String(text));
  j.Set("ids", ints(ids));
  j.Set("prompt_ids", ints(prompt_ids));
  j.Set("stop", Json::String(StopReasonName(stop)));
  j.Set("prompt_tokens", Json::Integer(static_cast<int64_t>(prompt_ids.size())));
  j.Set("new_tokens", Json::Integer(static_cast<int64_t>(ids.size())));
  j.Set("prefill_tokens_per_s", Json::Number(prefill_tokens_per_s));
  j.Set("decode_tokens_per_s", Json::Number(decode_tokens_per_s));
  j.Set("tokenizer", Json::String(tokenizer));
  return j;
}

GenerateResult GenerateText(const GenerateRequest& r) {
  // The KV cache is planned for all of them up front; 2^20 bounds its size for any model.
  constexpr int64_t kMaxNewTokens = int64_t{1} << 20;
  SM_CHECK(r.max_new_tokens >= 1 && r.max_new_tokens <= kMaxNewTokens)
      << "--max-new-tokens must be in [1, " << kMaxNewTokens << "], got " << r.max_new_tokens;
  r.sampling.Validate();
  const HfModelDir m = ReadHfModelDir(r.model_dir);
  GenerateResult out;
  const std::unique_ptr<Tokenizer> tok = LoadModelTokenizer(m, r.tokenizer, &out.tokenizer);
  out.prompt_ids = tok->DocumentPrefix();
  tok->Encode(r.prompt, out.prompt_ids);
  const int64_t n = static_cast<int64_t>(out.prompt_ids.size());
  SM_CHECK(n >= 1) << "the prompt is empty (and the tokenizer '" << out.tokenizer
                   << "' puts no BOS before a document): pass some --prompt text";
  if (m.max_positions > 0) {
    SM_CHECK(n < m.max_positions) << "the prompt is " << n << " tokens, but the model in '" << m.dir
                                  << "' holds max_position_embeddings = " << m.max_positions
                                  << ": shorten the prompt";
    SM_CHECK(n + r.max_new_tokens <= m.max_positions)
        << "the prompt (" << n << " tokens) and --max-new-tokens " << r.max_new_tokens
        << " exceed the model's max_position_embeddings = " << m.max_positions
        << ": pass --max-new-tokens " << m.max_positions - n << " or less";
  }
  // The prompt is prefilled in pieces of at most this many tokens (the activations' rows).
  constexpr int64_t kPrefillChunk = 512;
  Model model = LoadHfModel(m, std::min(n, kPrefillChunk), r.threads);
  GenerationOptions options;
  options.max_new_tokens = r.max_new_tokens;
  options.sampling = r.sampling;
  options.stop_id = tok->eos();
  const Generation g = Generate(model, out.prompt_ids, options);
  out.ids = g.ids;
  out.stop = g.stop;
  // A model's vocab may be padded past its tokenizer's ids; a padding id has no text.
  std::vector<int32_t> known;
  for (int32_t id : g.ids)
    if (id < tok->vocab_size()) known.push_back(id);
  out.text = Utf8Lossy(tok->Decode(known));
  if (g.prefill_seconds > 0) out.prefill_tokens_per_s = n / g.prefill_seconds;
  const int64_t decoded = static_cast<int64_t>(g.ids.size()) - 1;
  if (decoded > 0 && g.decode_seconds > 0) out.decode_tokens_per_s = decoded / g.decode_seconds;
  return out;
}

}  // namespace seqmesh::launch
