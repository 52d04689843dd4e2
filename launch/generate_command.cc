// `seqmesh generate --model DIR --prompt TEXT [--max-new-tokens 128] [--temperature 0]
//                   [--top-p 1] [--top-k 0] [--seed 0] [--tokenizer PATH] [--json]`
//
// Continues the prompt with the model (launch/generate.h): greedy by default, sampled with a
// temperature, nucleus (top-p) and top-k; stops at the tokenizer's EOS or --max-new-tokens.
// Prints the completion, or with --json one object with the ids, the text and tokens/s.
#include <iostream>

#include "launch/command.h"
#include "launch/flags.h"
#include "launch/generate.h"

namespace seqmesh::launch {

int RunGenerate(const Args& args) {
  GenerateRequest r;
  double temperature = 0, top_p = 1;
  int64_t seed = 0, threads = 2;
  bool json = false;
  FlagParser flags("generate", "continue a prompt with a model (KV cache; greedy or sampled)",
                   "seqmesh generate --model runs/text/step-00000300 --prompt \"Once upon\"");
  flags
      .String("--model", "DIR", &r.model_dir,
              "a Hugging Face model directory (config.json and model.safetensors)", Required::kYes)
      .String("--prompt", "TEXT", &r.prompt, "the text to continue", Required::kYes)
      .String("--tokenizer", "PATH", &r.tokenizer,
              "byte, a tokenizer.json (or a folder holding one) or a .tiktoken file; default: the "
              "model directory's, else byte for a 259-id model")
      .Int("--max-new-tokens", "N", &r.max_new_tokens, "stop after N new tokens", 1)
      .Double("--temperature", "T", &temperature, "0: greedy; otherwise sample from softmax(z/T)")
      .Double("--top-p", "P", &top_p, "sample from the smallest set of tokens with mass >= P")
      .Int("--top-k", "K", &r.sampling.top_k, "sample from the K most likely tokens (0: all)", 0)
      .Int("--seed", "S", &seed, "the sampler's seed (the same seed, the same text)", 0)
      .Int("--threads", "T", &threads, "CPU threads", 1)
      .Switch("--json", &json,
              "print one JSON object: text, ids, prompt_ids, stop, tokens/s of prefill and decode");
  if (!flags.Parse(args)) return 0;
  r.sampling.temperature = static_cast<float>(temperature);
  r.sampling.top_p = static_cast<float>(top_p);
  r.sampling.seed = static_cast<uint64_t>(seed);
  r.threads = static_cast<int>(threads);
  const GenerateResult g = GenerateText(r);
  if (json) {
    std::cout << g.ToJson().Dump() << "\n";
  } else {
    std::cout << g.text << "\n";
    std::cerr << "generate: " << g.prompt_ids.size() << " prompt tokens, " << g.ids.size()
              << " new (stop: " << StopReasonName(g.stop) << "), "
              << static_cast<int64_t>(g.decode_tokens_per_s) << " tokens/s\n";
  }
  return 0;
}

}  // namespace seqmesh::launch
