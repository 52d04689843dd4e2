// StepExecutor: runs one rank's part of a StepPlan (DESIGN.md section 3, step 3) on a Model.
//
// The rank's micro-batches run in plan order. A local micro-batch (ring of one) packs its
// segments as documents of one varlen batch. A ring micro-batch runs each of its segments as
// its own forward + backward with ring attention over the plan's ring (every member does the
// same, in the same order, so the plan's global ring order holds). The plan's token ranges are
// checked against parallel's ZigzagLayout, which the ring attention runs.
//
// Loss is token-level: every micro-batch divides by the step's global target count, so the
// ranks' returned shares add up to the global loss and the gradients accumulated in the model
// add up (over ranks) to the whole batch's. The caller zeroes gradients before and reduces
// them after (GradSync).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include "parallel/ring_attention.h"
#include "proto/step_plan.pb.h"
#include "runtime/model.h"

namespace seqmesh {

// Where a step's tokens come from. Called as a function, it appends tokens [begin, end) of the
// plan's sequence `sequence` (its index in the global batch) to `out` (as IndexedDataset's
// ReadRange does). With a loss mask (chat data: prompts are not trained on), Trained appends one
// byte per token of the same range: 1 where the token counts as a next-token target, 0 where it
// does not; without one every token counts. Any callable of the first shape converts to it.
class TokenReader {
 public:
  using Tokens =
      std::function<void(uint64_t sequence, int64_t begin, int64_t end, std::vector<int32_t>& out)>;
  using Mask =
      std::function<void(uint64_t sequence, int64_t begin, int64_t end, std::vector<uint8_t>& out)>;

  TokenReader() = default;
  template <typename F, typename = std::enable_if_t<std::is_invocable_v<
                            F&, uint64_t, int64_t, int64_t, std::vector<int32_t>&>>>
  TokenReader(F tokens) : tokens_(std::move(tokens)) {}  // NOLINT: implicit on purpose
  TokenReader(Tokens tokens, Mask trained)
      : tokens_(std::move(tokens)), trained_(std::move(trained)) {}

  void operator()(uint64_t sequence, int64_t begin, int64_t end, std::vector<int32_t>& out) const {
    tokens_(sequence, begin, end, out);
  }
  bool has_mask() const { return static_cast<bool>(trained_); }
  void Trained(uint64_t sequence, int64_t begin, int64_t end, std::vector<uint8_t>& out) const {
    trained_(sequence, begin, end, out);
  }
  explicit operator bool() const { return static_cast<bool>(tokens_); }

 private:
  Tokens tokens_;
  Mask trained_;
};

// One forward + backward as it ran: times from the start of Run, ms.
struct PassTiming {
  int micro_batch = 0;
  int segment = -1;  // -1: the whole local micro-batch
  int ring_size = 1;
  int64_t tokens = 0;
  double start_ms = 0, end_ms = 0;
};

struct StepResult {
  double loss = 0;        // this rank's share: its tokens' loss sum / target_tokens
  int64_t tokens = 0;     // tokens this rank ran
  int micro_batches = 0;  // forward + backward passes
  int64_t ring_bytes_sent = 0;
  double compute_ms = 0;
  std::vector<PassTiming> passes;
};

struct PackedBatch;  // a micro-batch under construction (step_executor.cc)

class StepExecutor {
 public:
  // `link` carries ring exchanges between world ranks; `rank` is this rank's world rank.
  StepExecutor(Model& model, RingLink& link, int rank);

  // Runs `plan`'s micro-batches for this rank.
  StepResult Run(const proto::StepPlan& plan, uint64_t target_tokens, const TokenReader& read);
  // Forward only (validation): this rank's share of the loss of `plan`, local and ring
  // micro-batches alike (every ring member evaluates the same plan). Gradients are not touched.
  double Evaluate(const proto::StepPlan& plan, uint64_t target_tokens, const TokenReader& read);
  // True while the rank's last backward of a Run runs: the model's gradient-ready hook then
  // reports gradients that are final for the step (HdpStep starts their reduction).
  bool in_last_backward() const { return in_last_backward_; }

 private:
  void CheckPlan(const proto::StepPlan& plan, uint64_t target_tokens) const;
  int64_t LengthOf(const proto::StepPlan& plan, uint64_t id) const;
  // The micro-batch's offload ratio as the model's offloaded layers (Batch::offloaded_layers).
  int64_t OffloadedLayers(const proto::StepPlan& plan, const proto::MicroBatch& mb) const;
  void PackLocal(const proto::StepPlan& plan, const proto::MicroBatch& mb, const TokenReader& read,
                 PackedBatch& packed) const;
  std::unique_ptr<RingAttention> PackRing(const proto::StepPlan& plan, const proto::MicroBatch& mb,
                                          const proto::Segment& seg, const TokenReader& read,
                                          RingLink& link, PackedBatch& packed) const;

  Model& model_;
  RingLink& link_;
  int rank_;
  bool in_last_backward_ = false;
};

}  // namespace seqmesh
