// Sequence-length distributions for simulated global batches: bucket tables (DESIGN.md section
// 6), lengths files, and the empirical lengths of a Megatron .idx dataset index.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace seqmesh::scheduler {

class LengthDistribution {
 public:
  // A bucket (lower, upper] sampled log-uniformly, or an atom (lower == upper).
  struct Bucket {
    double lower;
    double upper;
    double probability;
  };

  // "byted-like" or "github-like"; an unknown name is an error listing the known ones.
  static LengthDistribution Named(const std::string& name);
  // Lines `upper_bound probability` (log-uniform from the previous bound; the first bucket
  // starts at upper/2) or `=tokens probability`. Probabilities must sum to 1 within 1e-3.
  static LengthDistribution ParseLengthsText(const std::string& text, const std::string& source);
  // Reads the sequence lengths of a Megatron MMIDIDX index; samples them uniformly.
  static LengthDistribution FromMegatronIndex(const std::string& path);
  // A name, a .idx path, or a lengths-file path.
  static LengthDistribution FromArgument(const std::string& name_or_path);

  int64_t Sample(std::mt19937_64& rng) const;
  // Lengths drawn until they sum to batch_tokens; each is capped at `context` and the last is
  // cut so the total is exactly batch_tokens.
  std::vector<int64_t> DrawBatch(int64_t batch_tokens, int64_t context, uint64_t seed) const;

 private:
  std::vector<Bucket> buckets_;
  std::vector<double> cumulative_;
  std::vector<int64_t> empirical_;  // when non-empty, used instead of buckets_
  void Finish(const std::string& source);
};

}  // namespace seqmesh::scheduler
