// GradSync: gradient reduction over all ranks and the ZeRO-1 AdamW step (DESIGN.md section 3,
// step 4).
//
// Gradients arrive already normalized by the global token count (the model's loss divides by
// it), so the whole-batch gradient is the plain sum over ranks. Parameters are grouped into
// buckets of consecutive tensors (e.g. one per layer). Each bucket is flattened into a buffer
// padded to a multiple of the rank count n and cut into n equal shards; rank r owns shard r of
// every bucket, and keeps AdamW moments for its shards only (ZeRO-1). A world of one keeps no
// flat buffers: its shard is the parameters and gradients themselves.
//
// One step:
//   LayerReady(b)  for buckets whose backward finished: copy the bucket's gradients into its flat
//                  buffer and start a non-blocking reduce-scatter (overlaps the rest of backward);
//   Step(lr)       starts the buckets not started yet, completes all, computes the global
//                  gradient norm (sum of shard squares, all-reduced), applies AdamW with clipping
//                  to this rank's shards (weight decay only on elements of ndim >= 2 tensors; a
//                  shard may straddle tensors and the padding), all-gathers every bucket's
//                  parameters and copies them back into the parameter tensors.
// The arithmetic per element is AdamW::Step's (the same cpu::Vec().adamw kernel), so a sharded
// step equals the unsharded one whenever the summed gradients are equal.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/optimizer.h"
#include "runtime/optimizer_state_store.h"
#include "runtime/parameter_store.h"
#include "runtime/tensor.h"

namespace seqmesh {

// A run of consecutive elements of one parameter tensor whose AdamW moments a rank holds.
struct MomentPiece {
  size_t tensor = 0;   // index into the parameters
  int64_t offset = 0;  // first element in the tensor
  int64_t length = 0;
};

class GradSync {
 public:
  // `bucket_ends` are the exclusive end indices of the buckets in params (last = params.size());
  // empty means one bucket of everything. params and grads are f32 and matching; their memory
  // must stay valid.
  //
  // `start_order` lists every bucket once: the order in which reductions start on every rank.
  // Collectives must be issued in the same order everywhere, but ranks finish backward at
  // different times (a rank with no micro-batch calls no LayerReady at all), so LayerReady only
  // marks a bucket ready and reductions start in this order as far as the ready buckets allow.
  // Empty: descending bucket index (layers finish backward last to first).
  //
  // `make_state` makes the store of this rank's AdamW state (its shard, as pieces of the
  // parameter tensors each viewed as a parameter of its own); null: in memory, one sub-group.
  // The result does not depend on the store or its sub-group size (the update is per element).
  GradSync(Communicator& comm, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
           const AdamWConfig& config, std::vector<size_t> bucket_ends = {},
           std::vector<int> start_order = {}, const OptimizerStateFactory& make_state = {});

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // Bucket b's gradients are final (its backward is done); at most once a step. Starts the
  // reductions that start_order allows now and polls the ones in flight (MPI progresses them
  // only inside MPI calls).
  void LayerReady(int b);
  // Polls the buckets in flight once, without waiting.
  void Progress();
  // Starts the buckets not started yet and completes every reduction (Step begins with this;
  // callable before it to time the reduction left exposed after backward).
  void FinishReductions();
  // Completes the reductions and updates the parameters on all ranks; returns the global
  // gradient norm before clipping (max_norm <= 0: no clipping). A norm that is not finite
  // updates nothing (parameters, moments and the step count stay as they were) and is returned:
  // every rank sees the same norm, so all skip the step together.
  double Step(float lr, float max_norm);

  int64_t step() const { return step_; }

  // Checkpoints: this rank's moments, as pieces of the parameter tensors (the shard layout
  // depends on the rank count; the pieces do not, so any rank count can load them).
  //
  // The pieces, in the order ForEachMomentPiece and LoadMoments visit them: a writer lays out
  // its file from these before the first visit.
  std::vector<MomentPiece> moment_pieces() const;
  // fn(tensor index, offset in the tensor, m, v, length) for this rank's moments, in piece order.
  // The store visits its state in sub-groups, so a piece may arrive split into consecutive
  // sub-pieces (one call each, in order, together covering the piece once), and m and v point
  // into the store's staging memory: they are valid only during the call.
  void ForEachMomentPiece(const std::function<void(size_t tensor, int64_t offset, const float* m,
                                                   const float* v, int64_t length)>& fn) const;
  // Loads this rank's moments and sets the optimizer step count: the store is visited as by
  // ForEachMomentPiece and fill(tensor index, offset in the tensor, length, m, v) writes the
  // moments of elements [offset, offset + length) of that tensor into m and v (length floats
  // each, valid only during the call), once per (sub-)piece.
  void LoadMoments(const std::function<void(size_t tensor, int64_t offset, int64_t length, float* m,
                                            float* v)>& fill,
                   int64_t step);
  int64_t shard_elements() const { return shard_total_; }  // moments held by this rank
  OptimizerStateStore& state() { return *state_; }
  // Parameter offload with several ranks (offload/parameter_offload.h): the copies between the
  // model's parameters and this rank's shard (before the update, and the all-gathered parameters
  // after it) sweep params through `access`. Alone, the optimizer store's own sweep does it.
  void SetParamAccess(ParamAccess access) { param_access_ = std::move(access); }
  bool alone() const { return alone_; }
  // A world of one whose store holds the gradients (an SSD store, GradientsReady): each bucket's
  // gradients go to the store when the bucket is ready and their memory is given back, so a
  // step holds about one bucket's gradients at a time (with one micro-batch per step; earlier
  // micro-batches accumulate into all of them). The norm is GlobalNorm's, bit for bit.
  bool hands_off_gradients() const { return handoff_; }
  // After a step that handed every gradient off, the gradients read as zero already: the next
  // step need not zero them (which would make them resident again). Cleared by the caller when
  // it writes gradients.
  bool gradients_released() const { return gradients_released_; }
  void GradientsInUse() { gradients_released_ = false; }

 private:
  struct Bucket {
    size_t first, last;    // tensors [first, last)
    int64_t numel;         // unpadded
    int64_t shard;         // padded / n
    int64_t flat_offset;   // in flat_grad_ / flat_param_ (padded size n * shard)
    int64_t shard_offset;  // in shard_grad_, m_, v_
    CommWork work;
    bool ready = false;
    bool started = false;
    uint64_t trace_id = 0;  // its open async event in the trace (0: none)
  };
  void TraceDone(Bucket& b);  // ends b's async event once its reduction completed
  void StartReady();          // starts buckets in start_order_ while the next one is ready
  // Calls fn(tensor index, offset in tensor, offset in shard, length) for the parts of this
  // rank's shard of bucket b that hold tensor elements (not padding).
  template <typename Fn>
  void ForEachShardPiece(const Bucket& b, Fn&& fn) const;

  Communicator& comm_;
  std::vector<Tensor> params_, grads_;
  std::vector<int64_t> tensor_offset_;  // offset of each tensor inside its bucket
  std::vector<Bucket> buckets_;
  std::vector<int> start_order_;
  size_t next_start_ = 0;  // index into start_order_
  uint64_t trace_ids_ = 0;
  AdamWConfig config_;
  std::vector<float> flat_grad_, flat_param_, shard_grad_;
  // This rank's shard as pieces of the parameter tensors (tensor, offset in it), each viewed as a
  // parameter of its own over flat_param_ (the master weights it updates) and shard_grad_. Their
  // AdamW moments live in `state_` and are visited through it in sub-groups, as AdamW's are
  // (runtime/optimizer_state_store.h): an offloaded store plugs in here.
  struct Piece {
    size_t tensor;
    int64_t offset;
  };
  void BuildPieces(const OptimizerStateFactory& make_state);
  void CopyParamsToShard();  // params_ -> piece_params_ (this rank's shard of flat_param_)
  std::vector<Piece> pieces_;
  std::vector<Tensor> piece_params_, piece_grads_;
  std::unique_ptr<OptimizerStateStore> state_;
  int64_t shard_total_ = 0;
  // A world of one: no flat buffers; the pieces view the parameters and gradients themselves
  // (reducing over one rank copies nothing), so `seqmesh train` holds 16 bytes per parameter.
  bool alone_ = false;
  ParamAccess param_access_;
  void HandOff(const Bucket& b);
  bool handoff_ = false, gradients_released_ = false;
  std::vector<std::vector<double>> squares_;  // per tensor: its chunks' squares (hand-off)
  std::vector<size_t> first_piece_;           // per tensor (and one past): its first piece
  int64_t step_ = 0;
};

}  // namespace seqmesh
