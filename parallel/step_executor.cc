#include "parallel/step_executor.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "runtime/check.h"
#include "runtime/layers.h"
#include "runtime/trace.h"

namespace seqmesh {
namespace {

// Counts the bytes this rank sends through another link.
class CountingLink : public RingLink {
 public:
  explicit CountingLink(RingLink& inner) : inner_(inner) {}
  void Post(int tag, const float* send, int64_t send_count, int to, float* recv, int64_t recv_count,
            int from) override {
    bytes_ += send_count * static_cast<int64_t>(sizeof(float));
    inner_.Post(tag, send, send_count, to, recv, recv_count, from);
  }
  void Complete(int tag) override { inner_.Complete(tag); }
  int64_t bytes() const { return bytes_; }

 private:
  RingLink& inner_;
  int64_t bytes_ = 0;
};

}  // namespace

// A micro-batch under construction: each document is some token ranges of one sequence, with
// next-token targets and positions taken in the whole sequence.
struct PackedBatch {
  std::vector<int32_t> tokens, targets, positions, cu{0};
  std::vector<int32_t> scratch;
  std::vector<uint8_t> trained;  // the reader's loss mask of the scratch range

  // Positions are g - position_base (0: the tokens' places in the whole sequence).
  void AddRange(const TokenReader& read, uint64_t sequence, int64_t length, int64_t begin,
                int64_t end, int64_t position_base = 0) {
    const int64_t stop = std::min(end + 1, length);  // one more token for the last target
    scratch.clear();
    read(sequence, begin, stop, scratch);
    SM_CHECK(static_cast<int64_t>(scratch.size()) == stop - begin)
        << "sequence " << sequence << ": read " << scratch.size() << " tokens of [" << begin << ", "
        << stop << ")";
    trained.clear();
    if (read.has_mask()) {
      read.Trained(sequence, begin, stop, trained);
      SM_CHECK(trained.size() == scratch.size())
          << "sequence " << sequence << ": read " << trained.size() << " loss-mask bytes for "
          << scratch.size() << " tokens";
    }
    for (int64_t g = begin; g < end; ++g) {
      tokens.push_back(scratch[g - begin]);
      const bool counts = g + 1 < length && (trained.empty() || trained[g + 1 - begin] != 0);
      targets.push_back(counts ? scratch[g + 1 - begin] : kIgnoreIndex);
      positions.push_back(static_cast<int32_t>(g - position_base));
    }
  }
  void EndDocument() { cu.push_back(static_cast<int32_t>(tokens.size())); }
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

namespace {

double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// One forward + backward: a whole local micro-batch, or one ring segment of a ring micro-batch.
struct Pass {
  int micro_batch;
  int segment;  // -1: every segment (local)
};

}  // namespace

StepExecutor::StepExecutor(Model& model, RingLink& link, int rank)
    : model_(model), link_(link), rank_(rank) {}

namespace {

// A rank's passes in plan order: a local micro-batch is one pass, a ring micro-batch one per
// segment.
std::vector<Pass> PassesOf(const proto::StepPlan& plan, const proto::RankPlan& mine, int rank) {
  std::vector<Pass> passes;
  for (int m = 0; m < mine.micro_batches_size(); ++m) {
    const proto::MicroBatch& mb = mine.micro_batches(m);
    if (mb.ring_size() <= 1) {
      passes.push_back({m, -1});
    } else {
      SM_CHECK(mb.segments_size() > 0)
          << "step " << plan.step() << ": rank " << rank << "'s ring micro-batch " << m
          << " holds no tokens of its ring";
      for (int s = 0; s < mb.segments_size(); ++s) passes.push_back({m, s});
    }
  }
  return passes;
}

}  // namespace

int64_t StepExecutor::OffloadedLayers(const proto::StepPlan& plan,
                                      const proto::MicroBatch& mb) const {
  if (mb.offload_ratio() == 0) return 0;
  const int64_t layers = model_.config().layers;
  SM_CHECK(plan.layers_per_rank() == layers)
      << "step " << plan.step() << ": the plan's offload ratios count " << plan.layers_per_rank()
      << " layers per rank but the model has " << layers
      << " (the cost file was profiled for another model: distributed.cost)";
  return Model::OffloadedLayersFor(mb.offload_ratio(), layers);
}

int64_t StepExecutor::LengthOf(const proto::StepPlan& plan, uint64_t id) const {
  SM_CHECK(id < static_cast<uint64_t>(plan.sequences_size()))
      << "step " << plan.step() << ": segment names sequence " << id << " of "
      << plan.sequences_size();
  return static_cast<int64_t>(plan.sequences(id).length());
}

void StepExecutor::CheckPlan(const proto::StepPlan& plan, uint64_t target_tokens) const {
  SM_CHECK(rank_ >= 0 && rank_ < plan.num_ranks() && plan.ranks_size() == plan.num_ranks())
      << "step " << plan.step() << ": the plan has " << plan.ranks_size() << " rank entries for "
      << plan.num_ranks() << " ranks; this is rank " << rank_;
  SM_CHECK(plan.ranks(rank_).rank() == rank_) << "step " << plan.step() << ": plan entry " << rank_
                                              << " is for rank " << plan.ranks(rank_).rank();
  SM_CHECK(target_tokens > 0) << "step " << plan.step() << ": the global batch has no targets";
  for (int i = 0; i < plan.sequences_size(); ++i)
    SM_CHECK(plan.sequences(i).id() == static_cast<uint64_t>(i))
        << "step " << plan.step() << ": sequence entry " << i << " has id "
        << plan.sequences(i).id() << " (ids must be the batch indices)";
}

// Packs one local micro-batch: each segment's ranges as one document (a segment that restarts
// positions counts them from its first token).
void StepExecutor::PackLocal(const proto::StepPlan& plan, const proto::MicroBatch& mb,
                             const TokenReader& read, PackedBatch& packed) const {
  for (const proto::Segment& seg : mb.segments()) {
    const int64_t len = LengthOf(plan, seg.sequence_id());
    const int64_t base =
        seg.restart_positions() && seg.ranges_size() > 0 ? seg.ranges(0).begin() : 0;
    for (const proto::TokenRange& r : seg.ranges()) {
      SM_CHECK(r.begin() < r.end() && r.end() <= static_cast<uint64_t>(len))
          << "step " << plan.step() << ": range [" << r.begin() << ", " << r.end()
          << ") of sequence " << seg.sequence_id() << " (length " << len << ")";
      packed.AddRange(read, seg.sequence_id(), len, r.begin(), r.end(), base);
    }
    packed.EndDocument();
  }
}

// Packs this rank's zigzag chunks of one ring segment and returns the ring attention that runs
// its attention; the plan's ranges must be the chunks parallel's ZigzagLayout gives.
std::unique_ptr<RingAttention> StepExecutor::PackRing(const proto::StepPlan& plan,
                                                      const proto::MicroBatch& mb,
                                                      const proto::Segment& seg,
                                                      const TokenReader& read, RingLink& link,
                                                      PackedBatch& packed) const {
  const int64_t len = LengthOf(plan, seg.sequence_id());
  const int d = mb.ring_size(), pos = mb.ring_position();
  SM_CHECK(pos >= 0 && pos < d && mb.ring(pos) == rank_)
      << "step " << plan.step() << ": rank " << rank_ << " is not at position " << pos
      << " of its ring";
  const ZigzagLayout layout(len, d);
  std::vector<std::pair<uint64_t, uint64_t>> expected, got;
  for (int which = 0; which < 2; ++which) {
    const int c = layout.LocalChunk(pos, which);
    if (layout.ChunkEnd(c) > layout.ChunkBegin(c))
      expected.emplace_back(layout.ChunkBegin(c), layout.ChunkEnd(c));
  }
  for (const proto::TokenRange& r : seg.ranges()) got.emplace_back(r.begin(), r.end());
  SM_CHECK(got == expected) << "step " << plan.step() << ": sequence " << seg.sequence_id()
                            << " (length " << len << ") at ring position " << pos << " of " << d
                            << ": the plan's token ranges are not the zigzag chunks this worker "
                               "runs";
  for (auto [b, e] : expected) packed.AddRange(read, seg.sequence_id(), len, b, e);
  packed.EndDocument();
  const ModelConfig& c = model_.config();
  return std::make_unique<RingAttention>(
      AttentionDims{static_cast<int>(c.heads), static_cast<int>(c.kv_heads),
                    static_cast<int>(c.head_dim())},
      layout, pos, std::vector<int>(mb.ring().begin(), mb.ring().end()), link);
}

namespace {

// A training pass's dropout key (Batch::dropout_key): never 0, the same for the same step, rank
// and pass whatever the thread count or a resume.
uint64_t DropoutKey(uint64_t step, int rank, size_t pass) {
  uint64_t z = (step + 1) * 0x9e3779b97f4a7c15ull ^ (static_cast<uint64_t>(rank) << 32) ^ pass;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z == 0 ? 1 : z;
}

}  // namespace

StepResult StepExecutor::Run(const proto::StepPlan& plan, uint64_t target_tokens,
                             const TokenReader& read) {
  CheckPlan(plan, target_tokens);
  const proto::RankPlan& mine = plan.ranks(rank_);
  const std::vector<Pass> passes = PassesOf(plan, mine, rank_);
  CountingLink link(link_);
  StepResult result;
  const float normalizer = static_cast<float>(target_tokens);
  const auto start = std::chrono::steady_clock::now();
  for (size_t p = 0; p < passes.size(); ++p) {
    const proto::MicroBatch& mb = mine.micro_batches(passes[p].micro_batch);
    const trace::Scope pass_scope(
        passes[p].segment < 0 ? "micro-batch" : "micro-batch (ring)", "step",
        {trace::Int("micro_batch", passes[p].micro_batch), trace::Int("segment", passes[p].segment),
         trace::Int("ring_size", std::max(1, mb.ring_size()))});
    PackedBatch packed;
    std::unique_ptr<RingAttention> ring_attention;
    if (passes[p].segment < 0)
      PackLocal(plan, mb, read, packed);
    else
      ring_attention = PackRing(plan, mb, mb.segments(passes[p].segment), read, link, packed);
    Batch batch = packed.View();
    if (ring_attention) {
      batch.split_doc = 0;
      batch.split_attention = ring_attention.get();
    }
    batch.dropout_key = DropoutKey(plan.step(), rank_, p);
    batch.offloaded_layers = OffloadedLayers(plan, mb);
    batch.backward_follows = true;
    PassTiming timing{passes[p].micro_batch, passes[p].segment, std::max(1, mb.ring_size()),
                      batch.num_tokens,      MsSince(start),    0};
    {
      const trace::Scope s("forward", "compute", {trace::Int("tokens", batch.num_tokens)});
      result.loss += model_.Forward(batch, normalizer);
    }
    in_last_backward_ = p + 1 == passes.size();
    {
      const trace::Scope s("backward", "compute", {trace::Int("tokens", batch.num_tokens)});
      model_.Backward();
    }
    in_last_backward_ = false;
    timing.end_ms = MsSince(start);
    result.passes.push_back(timing);
    result.tokens += batch.num_tokens;
    ++result.micro_batches;
  }
  result.compute_ms = MsSince(start);
  result.ring_bytes_sent = link.bytes();
  return result;
}

double StepExecutor::Evaluate(const proto::StepPlan& plan, uint64_t target_tokens,
                              const TokenReader& read) {
  CheckPlan(plan, target_tokens);
  const proto::RankPlan& mine = plan.ranks(rank_);
  const float normalizer = static_cast<float>(target_tokens);
  double loss = 0;
  for (const Pass& pass : PassesOf(plan, mine, rank_)) {
    const proto::MicroBatch& mb = mine.micro_batches(pass.micro_batch);
    PackedBatch packed;
    std::unique_ptr<RingAttention> ring_attention;
    if (pass.segment < 0)
      PackLocal(plan, mb, read, packed);
    else  // ring attention's forward completes its exchanges: no backward is owed
      ring_attention = PackRing(plan, mb, mb.segments(pass.segment), read, link_, packed);
    Batch batch = packed.View();
    if (ring_attention) {
      batch.split_doc = 0;
      batch.split_attention = ring_attention.get();
    }
    batch.offloaded_layers = OffloadedLayers(plan, mb);
    loss += model_.Forward(batch, normalizer);
  }
  return loss;
}

}  // namespace seqmesh
