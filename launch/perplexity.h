// `seqmesh eval`'s work, callable without the command line (the Python package's eval()): the
// mean next-token loss of a model on every document of an indexed dataset, and its perplexity
// exp(mean loss), as the trainer's validation counts it (launch/validation.h): each document on
// its own, every token after the first predicted from the ones before it, the sum of the token
// losses divided by their count.
//
// A document longer than max_length is read in consecutive windows of max_length tokens, each a
// fresh context (positions from 0); the last token of a window still predicts the first of the
// next, so every document of length n counts n - 1 predictions whatever max_length is. Windows
// are packed into forwards of up to max_length tokens (documents never attend across a
// boundary, as in training).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/json.h"
#include "runtime/model.h"

namespace seqmesh::launch {

struct EvalRequest {
  std::string model_dir;
  std::string data;        // the dataset prefix (PREFIX.bin, .idx, and .dataset.json if any)
  int64_t max_length = 0;  // 0: the longest document, at most max_position_embeddings (or 4096)
  int threads = 2;
};

struct EvalResult {
  int64_t documents = 0;
  int64_t predicted = 0;  // tokens whose loss was counted
  int64_t max_length = 0;
  double loss_sum = 0;  // nats
  double mean_loss = 0, perplexity = 0;
  double tokens_per_s = 0;  // tokens through the model per second
  Json ToJson() const;      // {"documents", "tokens", "max_length", "loss", "perplexity", ...}
};

// Packs windows of documents into forwards of at most the model's max_tokens and adds their
// losses: the compute of EvaluatePerplexity, on any documents.
class PerplexityMeter {
 public:
  explicit PerplexityMeter(Model& model);
  void Add(std::span<const int32_t> document);
  // Runs what is still packed; call before reading the totals.
  void Flush();
  int64_t documents() const { return documents_; }
  int64_t predicted() const { return predicted_; }
  int64_t tokens() const { return tokens_; }
  double loss_sum() const { return loss_sum_; }

 private:
  Model& model_;
  int64_t capacity_;
  std::vector<int32_t> tokens_buf_, targets_buf_, cu_{0}, window_targets_;
  int64_t documents_ = 0, predicted_ = 0, tokens_ = 0, pending_predicted_ = 0;
  double loss_sum_ = 0;
};

// Errors (one line each): a missing model directory or dataset, a dataset whose
// PREFIX.dataset.json names another tokenizer than the model directory's (launch/preflight.h),
// ids beyond the model's vocab, a dataset with nothing to predict.
EvalResult EvaluatePerplexity(const EvalRequest& request);

}  // namespace seqmesh::launch
