// `seqmesh eval --model DIR --data PREFIX [--max-length L] [--threads 2] [--json]`
//
// The model's mean token loss and perplexity on every document of a dataset
// (launch/perplexity.h), counted as the trainer's validation counts its loss, and the tokens/s.
// A dataset whose PREFIX.dataset.json names another tokenizer than the model directory's is
// refused.
#include <iostream>

#include "launch/command.h"
#include "launch/flags.h"
#include "launch/format.h"
#include "launch/perplexity.h"

namespace seqmesh::launch {

int RunEval(const Args& args) {
  EvalRequest r;
  int64_t threads = 2;
  bool json = false;
  FlagParser flags("eval", "a model's loss and perplexity on a dataset",
                   "seqmesh eval --model runs/text/step-00000300 --data data/heldout");
  flags
      .String("--model", "DIR", &r.model_dir,
              "a Hugging Face model directory (config.json and model.safetensors)", Required::kYes)
      .String("--data", "PREFIX", &r.data, "an indexed dataset (seqmesh prep --output PREFIX)",
              Required::kYes)
      .Int("--max-length", "L", &r.max_length,
           "score longer documents in windows of L tokens (0: the longest document, at most the "
           "model's max_position_embeddings or 4096)",
           0)
      .Int("--threads", "T", &threads, "CPU threads", 1)
      .Switch(
          "--json", &json,
          "print one JSON object: documents, tokens, max_length, loss, perplexity, tokens_per_s");
  if (!flags.Parse(args)) return 0;
  r.threads = static_cast<int>(threads);
  const EvalResult e = EvaluatePerplexity(r);
  if (json) {
    std::cout << e.ToJson().Dump() << "\n";
  } else {
    std::cout << "eval: documents " << e.documents << "  tokens " << e.predicted << "  loss "
              << Fixed(e.mean_loss, 4) << "  perplexity " << Fixed(e.perplexity, 3) << "  "
              << static_cast<int64_t>(e.tokens_per_s) << " tokens/s\n";
  }
  return 0;
}

}  // namespace seqmesh::launch
