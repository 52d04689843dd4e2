// The mixed-placement scenario shared by the in-process and MPI ring tests: one long document
// split over world ranks {2, 0, 1} (ring order), two short documents whole on rank 3. Every
// rank builds the same single-rank reference (all three documents packed) and its own
// micro-batch (RankStep, for in-process ranks), or runs the scenario's Plan() through HdpStep
// (MPI ranks); the ranks' losses and gradients must add up to the reference's.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "parallel/ring_attention.h"
#include "proto/step_plan.pb.h"
#include "runtime/layers.h"
#include "runtime/model.h"

namespace seqmesh::testing {

class MixedPlacement {
 public:
  static constexpr int kRanks = 4;

  MixedPlacement() : layout_(kLongLen, 3) {
    config_.vocab = 53;
    config_.hidden = 48;
    config_.layers = 2;
    config_.heads = 4;
    config_.kv_heads = 2;
    config_.ffn = 64;
    std::mt19937 rng(5);
    for (int64_t len : {kLongLen, int64_t{20}, int64_t{13}}) {
      std::vector<int32_t> d(len);
      for (auto& x : d) x = static_cast<int32_t>(rng() % config_.vocab);
      docs_.push_back(d);
      normalizer_ += static_cast<float>(len - 1);
    }
    options_.max_tokens = 0;
    for (const auto& d : docs_) options_.max_tokens += static_cast<int64_t>(d.size());
  }

  // `grads_ready` is passed to the model as its on_layer_grads_ready hook.
  Model NewModel(std::function<void(int64_t)> grads_ready = {}) const {
    ModelOptions options = options_;
    options.on_layer_grads_ready = std::move(grads_ready);
    Model m(config_, options);
    m.InitRandom(99, 0.2f);
    m.ZeroGrad();
    return m;
  }
  float normalizer() const { return normalizer_; }
  const ModelConfig& config() const { return config_; }

  // Loss of one rank running everything; its gradients are in `model`.
  float ReferenceStep(Model& model) const {
    RankBatch all;
    for (const auto& d : docs_) all.Append(d);
    return model.Forward(all.View(), normalizer_);
  }

  // The placement as the plan a coordinator would serve: sequence 0 (the long document) on the
  // ring {2, 0, 1} in zigzag chunks, sequences 1 and 2 as one local micro-batch of rank 3.
  proto::StepPlan Plan() const {
    proto::StepPlan plan;
    plan.set_num_ranks(kRanks);
    plan.set_capacity(static_cast<uint64_t>(options_.max_tokens));
    for (size_t d = 0; d < docs_.size(); ++d) {
      proto::Sequence* s = plan.add_sequences();
      s->set_id(d);
      s->set_length(docs_[d].size());
    }
    auto add_range = [](proto::Segment* seg, int64_t begin, int64_t end) {
      proto::TokenRange* r = seg->add_ranges();
      r->set_begin(static_cast<uint64_t>(begin));
      r->set_end(static_cast<uint64_t>(end));
    };
    for (int rank = 0; rank < kRanks; ++rank) {
      proto::RankPlan* rp = plan.add_ranks();
      rp->set_rank(rank);
      proto::MicroBatch* mb = rp->add_micro_batches();
      if (rank < 3) {
        const int pos =
            static_cast<int>(std::find(kRing.begin(), kRing.end(), rank) - kRing.begin());
        for (int r : kRing) mb->add_ring(r);
        mb->set_ring_position(pos);
        proto::Segment* seg = mb->add_segments();
        seg->set_sequence_id(0);
        for (int which = 0; which < 2; ++which) {
          const int c = layout_.LocalChunk(pos, which);
          add_range(seg, layout_.ChunkBegin(c), layout_.ChunkEnd(c));
        }
      } else {
        mb->add_ring(rank);
        for (uint64_t d : {1, 2}) {
          proto::Segment* seg = mb->add_segments();
          seg->set_sequence_id(d);
          add_range(seg, 0, static_cast<int64_t>(docs_[d].size()));
        }
      }
    }
    return plan;
  }
  // Tokens of the plan's sequences (the documents).
  void Read(uint64_t sequence, int64_t begin, int64_t end, std::vector<int32_t>& out) const {
    out.insert(out.end(), docs_[sequence].begin() + begin, docs_[sequence].begin() + end);
  }
  // Every rank's micro-batches hold at most this many tokens.
  int64_t capacity() const { return options_.max_tokens; }

  // This rank's loss; `link` carries the ring's exchanges (ranks 0-2).
  float RankStep(int rank, Model& model, RingLink& link) const {
    RankBatch b;
    std::unique_ptr<RingAttention> ring_attention;
    if (rank < 3) {
      const int pos = static_cast<int>(std::find(kRing.begin(), kRing.end(), rank) - kRing.begin());
      std::vector<int32_t> part;
      for (int64_t r = 0; r < layout_.LocalTokens(pos); ++r)
        part.push_back(layout_.GlobalIndex(pos, r));
      b.AppendRows(docs_[0], part);
      ring_attention = std::make_unique<RingAttention>(
          AttentionDims{static_cast<int>(config_.heads), static_cast<int>(config_.kv_heads),
                        static_cast<int>(config_.head_dim())},
          layout_, pos, std::vector<int>(kRing.begin(), kRing.end()), link);
    } else {
      b.Append(docs_[1]);
      b.Append(docs_[2]);
    }
    Batch batch = b.View();
    if (ring_attention) {
      batch.split_doc = 0;
      batch.split_attention = ring_attention.get();
    }
    const float loss = model.Forward(batch, normalizer_);
    model.Backward();
    return loss;
  }

 private:
  static constexpr int64_t kLongLen = 150;
  static constexpr std::array<int, 3> kRing = {2, 0, 1};

  // A packed micro-batch under construction: tokens, next-token targets within each whole
  // document, positions in the document.
  struct RankBatch {
    std::vector<int32_t> tokens, targets, positions, cu{0};
    void Append(const std::vector<int32_t>& doc) {
      std::vector<int32_t> rows(doc.size());
      for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int32_t>(i);
      AppendRows(doc, rows);
    }
    // The given rows of `doc` (global indices) as one local document.
    void AppendRows(const std::vector<int32_t>& doc, const std::vector<int32_t>& rows) {
      for (int32_t g : rows) {
        tokens.push_back(doc[g]);
        targets.push_back(g + 1 < static_cast<int32_t>(doc.size()) ? doc[g + 1] : kIgnoreIndex);
        positions.push_back(g);
      }
      cu.push_back(static_cast<int32_t>(tokens.size()));
    }
    Batch View() const {
      Batch b;
      b.tokens = tokens.data();
      b.targets = targets.data();
      b.cu_seqlens = cu.data();
      b.num_docs = static_cast<int64_t>(cu.size()) - 1;
      b.num_tokens = static_cast<int64_t>(tokens.size());
      b.positions = positions.data();
      return b;
    }
  };

  ModelConfig config_;
  ModelOptions options_;
  ZigzagLayout layout_;
  std::vector<std::vector<int32_t>> docs_;
  float normalizer_ = 0;
};

}  // namespace seqmesh::testing
