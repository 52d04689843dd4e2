#include "parallel/grad_sync.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/check.h"
#include "runtime/cpu/vec.h"
#include "runtime/trace.h"

namespace seqmesh {

GradSync::GradSync(Communicator& comm, const std::vector<Tensor>& params,
                   const std::vector<Tensor>& grads, const AdamWConfig& config,
                   std::vector<size_t> bucket_ends, std::vector<int> start_order,
                   const OptimizerStateFactory& make_state)
    : comm_(comm), params_(params), grads_(grads), config_(config) {
  config_.Validate();
  SM_CHECK(params.size() == grads.size() && !params.empty())
      << "GradSync got " << params.size() << " params and " << grads.size() << " grads";
  for (size_t i = 0; i < params.size(); ++i) {
    CheckDType(params[i], DType::kF32);
    CheckDType(grads[i], DType::kF32);
    SM_CHECK(params[i].shape() == grads[i].shape())
        << "GradSync: parameter '" << params[i].name() << "' " << params[i].shape().ToString()
        << " and its gradient '" << grads[i].name() << "' " << grads[i].shape().ToString()
        << " differ in shape";
  }
  if (bucket_ends.empty()) bucket_ends.push_back(params.size());
  SM_CHECK(bucket_ends.back() == params.size()) << "GradSync: the last bucket must end at "
                                                << params.size() << ", not " << bucket_ends.back();
  const int n = comm.size();
  tensor_offset_.resize(params.size());
  size_t first = 0;
  int64_t flat = 0, shard_total = 0;
  for (size_t end : bucket_ends) {
    SM_CHECK(end > first && end <= params.size())
        << "GradSync: bucket ends must increase, got " << end << " after " << first;
    Bucket b{};
    b.first = first;
    b.last = end;
    for (size_t t = first; t < end; ++t) {
      tensor_offset_[t] = b.numel;
      b.numel += params[t].numel();
    }
    b.shard = (b.numel + n - 1) / n;
    b.flat_offset = flat;
    b.shard_offset = shard_total;
    flat += b.shard * n;
    shard_total += b.shard;
    buckets_.push_back(std::move(b));
    first = end;
  }
  shard_total_ = shard_total;
  alone_ = n == 1;
  if (!alone_) {
    flat_grad_.assign(flat, 0.0f);  // padding stays zero
    flat_param_.assign(flat, 0.0f);
    shard_grad_.assign(shard_total, 0.0f);
  }
  BuildPieces(make_state);
  if (start_order.empty())
    for (int b = num_buckets() - 1; b >= 0; --b) start_order.push_back(b);
  std::vector<int> sorted = start_order;
  std::sort(sorted.begin(), sorted.end());
  for (int b = 0; b < num_buckets(); ++b)
    SM_CHECK(static_cast<int>(sorted.size()) == num_buckets() && sorted[b] == b)
        << "GradSync: start_order must list each of the " << num_buckets()
        << " buckets exactly once";
  start_order_ = std::move(start_order);
}

template <typename Fn>
void GradSync::ForEachShardPiece(const Bucket& b, Fn&& fn) const {
  const int64_t begin = comm_.rank() * b.shard, end = begin + b.shard;
  for (size_t t = b.first; t < b.last; ++t) {
    const int64_t t0 = tensor_offset_[t], t1 = t0 + params_[t].numel();
    const int64_t lo = std::max(begin, t0), hi = std::min(end, t1);
    if (lo < hi) fn(t, lo - t0, lo - begin, hi - lo);
  }
}

void GradSync::BuildPieces(const OptimizerStateFactory& make_state) {
  for (const Bucket& b : buckets_) {
    ForEachShardPiece(b, [&](size_t t, int64_t in_tensor, int64_t in_shard, int64_t len) {
      pieces_.push_back({t, in_tensor});
      const std::string name = params_[t].name() + "@" + std::to_string(in_tensor);
      // Alone, the shard is the whole model: its pieces are the tensors themselves.
      float* param = alone_
                         ? params_[t].f32() + in_tensor
                         : flat_param_.data() + b.flat_offset + comm_.rank() * b.shard + in_shard;
      float* grad =
          alone_ ? grads_[t].f32() + in_tensor : shard_grad_.data() + b.shard_offset + in_shard;
      piece_params_.emplace_back(name, DType::kF32, Shape{len}, param);
      piece_grads_.emplace_back("grad." + name, DType::kF32, Shape{len}, grad);
    });
  }
  state_ = make_state ? make_state(piece_params_)
                      : std::make_unique<InMemoryOptimizerStateStore>(piece_params_);
  // Alone, the pieces are the tensors in order (first_piece_ maps one to the other), and a store
  // that can hold the gradients takes them bucket by bucket as backward finishes.
  if (alone_ && state_->CanHoldGradients()) {
    handoff_ = true;
    gradients_released_ = true;  // a new model's gradients are zero and untouched
    state_->HoldGradients();
    squares_.resize(params_.size());
    first_piece_.assign(params_.size() + 1, pieces_.size());
    for (size_t k = pieces_.size(); k-- > 0;) first_piece_[pieces_[k].tensor] = k;
    for (size_t t = params_.size(); t-- > 0;)
      first_piece_[t] = std::min(first_piece_[t], first_piece_[t + 1]);
  }
}

// The bucket's gradients are final: their share of the norm is taken now (as GlobalNorm would
// take it), the store copies them, and their memory is given back (it reads as zero, which is
// what the next step starts from).
void GradSync::HandOff(const Bucket& b) {
  for (size_t t = b.first; t < b.last; ++t) {
    squares_[t].clear();
    AppendChunkSquares(grads_[t], squares_[t]);
  }
  state_->GradientsReady(piece_grads_, first_piece_[b.first], first_piece_[b.last]);
  for (size_t t = b.first; t < b.last; ++t) ZeroAndRelease(grads_[t].data(), grads_[t].bytes());
}

void GradSync::CopyParamsToShard() {
  if (alone_) return;  // the pieces are the parameters
  // Every parameter is swept (a store completes a group only when all its tensors were), the
  // pieces of this rank's shard copied on the way; pieces are in parameter order.
  size_t k = 0;
  for (size_t t = 0; t < params_.size(); ++t) {
    if (param_access_) param_access_.before(t, /*overwrite=*/false);
    for (; k < pieces_.size() && pieces_[k].tensor == t; ++k)
      std::memcpy(piece_params_[k].f32(), params_[t].f32() + pieces_[k].offset,
                  piece_params_[k].bytes());
    if (param_access_) param_access_.after(t, /*changed=*/false);
  }
}

void GradSync::LayerReady(int bi) {
  SM_CHECK(bi >= 0 && bi < num_buckets())
      << "GradSync::LayerReady: bucket " << bi << " of " << num_buckets();
  Bucket& b = buckets_[bi];
  SM_CHECK(!b.ready) << "GradSync::LayerReady: bucket " << bi << " already ready this step";
  b.ready = true;
  StartReady();
  Progress();
}

void GradSync::StartReady() {
  while (next_start_ < start_order_.size() && buckets_[start_order_[next_start_]].ready) {
    Bucket& b = buckets_[start_order_[next_start_++]];
    b.started = true;
    if (handoff_) HandOff(b);
    if (alone_) continue;  // the sum over one rank is its gradient, where it is
    float* flat = flat_grad_.data() + b.flat_offset;
    for (size_t t = b.first; t < b.last; ++t)
      std::memcpy(flat + tensor_offset_[t], grads_[t].f32(), grads_[t].bytes());
    b.work =
        comm_.StartReduceScatter(flat, shard_grad_.data() + b.shard_offset, b.shard, DType::kF32);
    if (trace::On()) {
      b.trace_id = ++trace_ids_;
      trace::AsyncBegin("reduce-scatter", "gradients", b.trace_id, trace::NowUs(),
                        {trace::Int("bucket", start_order_[next_start_ - 1]),
                         trace::Int("bytes", b.shard * comm_.size() * 4)});
    }
  }
}

void GradSync::TraceDone(Bucket& b) {
  if (b.trace_id == 0 || b.work.pending()) return;
  trace::AsyncEnd("reduce-scatter", "gradients", b.trace_id, trace::NowUs());
  b.trace_id = 0;
}

void GradSync::ForEachMomentPiece(
    const std::function<void(size_t, int64_t, const float*, const float*, int64_t)>& fn) const {
  // The store hands out the state sub-group by sub-group; nothing is written.
  state_->Visit(piece_params_, {}, StateAccess::kRead, [&](std::span<const OptimizerSlice> slices) {
    for (const OptimizerSlice& s : slices)
      fn(pieces_[s.tensor].tensor, pieces_[s.tensor].offset + s.begin, s.m, s.v, s.count);
  });
}

std::vector<MomentPiece> GradSync::moment_pieces() const {
  std::vector<MomentPiece> out;
  for (size_t k = 0; k < pieces_.size(); ++k)
    out.push_back({pieces_[k].tensor, pieces_[k].offset, piece_params_[k].numel()});
  return out;
}

void GradSync::LoadMoments(
    const std::function<void(size_t, int64_t, int64_t, float*, float*)>& fill, int64_t step) {
  SM_CHECK(step >= 0) << "GradSync::LoadMoments: negative optimizer step " << step;
  CopyParamsToShard();  // the loaded parameters become the master weights
  state_->Visit(piece_params_, {}, StateAccess::kOverwrite,
                [&](std::span<const OptimizerSlice> slices) {
                  for (const OptimizerSlice& s : slices) {
                    const Piece& p = pieces_[s.tensor];
                    fill(p.tensor, p.offset + s.begin, s.count, s.m, s.v);
                  }
                });
  step_ = step;
}

void GradSync::Progress() {
  for (Bucket& b : buckets_)
    if (b.started && b.work.pending()) {
      comm_.Test(b.work);
      TraceDone(b);
    }
}

void GradSync::FinishReductions() {
  const trace::Scope s("wait for gradient reductions", "gradients");
  for (Bucket& b : buckets_) b.ready = true;
  StartReady();
  for (Bucket& b : buckets_) {
    comm_.Wait(b.work);
    TraceDone(b);
  }
}

double GradSync::Step(float lr, float max_norm) {
  FinishReductions();

  // Global norm: this rank's shards hold disjoint parts of the summed gradient (padding is 0).
  // A world of one holds the whole gradient, the model's own: its norm is GlobalNorm's, the
  // unsharded AdamW's, so `seqmesh train` steps exactly as it did before it ran HdpStep.
  double norm = 0.0;
  if (handoff_) {
    std::vector<double> squares;
    for (const std::vector<double>& s : squares_) squares.insert(squares.end(), s.begin(), s.end());
    norm = NormOfSquares(squares);
    gradients_released_ = true;
  } else if (comm_.size() == 1) {
    norm = GlobalNorm(grads_);
  } else {
    double local = 0.0;
    for (float g : shard_grad_) local += static_cast<double>(g) * g;
    norm = std::sqrt(comm_.AllReduceScalar(local));
  }
  if (!std::isfinite(norm)) {
    // A NaN or infinite gradient (every rank holds the same norm, so all skip together): no
    // update, moments and step count unchanged; the caller's policy decides what follows.
    for (Bucket& b : buckets_) {
      b.started = false;
      b.ready = false;
    }
    next_start_ = 0;
    return norm;
  }
  const float scale = ClipScale(norm, max_norm);
  const trace::Scope update_scope("optimizer update", "optimizer");

  // The same per-element update as AdamW::Step.
  ++step_;
  const cpu::AdamWStep base = AdamWStepFor(config_, step_, lr, scale);
  // The in-memory store's master weights are this rank's copy of the parameters in its shard
  // (another store keeps its own, equal to it; it overwrites the copy with the update).
  CopyParamsToShard();
  state_->Visit(piece_params_, piece_grads_, StateAccess::kUpdate,
                [&](std::span<const OptimizerSlice> slices) {
                  for (const OptimizerSlice& sl : slices) {
                    cpu::AdamWStep s = base;
                    s.weight_decay = params_[pieces_[sl.tensor].tensor].shape().ndim() >= 2
                                         ? config_.weight_decay
                                         : 0.0f;
                    cpu::Vec().adamw(sl.master, sl.grad, sl.m, sl.v, sl.count, s);
                  }
                });
  const trace::Scope gather_scope("all-gather parameters", "gradients");
  for (Bucket& b : buckets_) {
    if (alone_) break;  // updated in place
    float* shard_param = flat_param_.data() + b.flat_offset + comm_.rank() * b.shard;
    b.work =
        comm_.StartAllGather(shard_param, flat_param_.data() + b.flat_offset, b.shard, DType::kF32);
  }
  for (Bucket& b : buckets_) {
    b.started = false;
    b.ready = false;
    if (alone_) continue;
    comm_.Wait(b.work);
    const float* flat = flat_param_.data() + b.flat_offset;
    for (size_t t = b.first; t < b.last; ++t) {
      if (param_access_) param_access_.before(t, /*overwrite=*/true);
      std::memcpy(params_[t].f32(), flat + tensor_offset_[t], params_[t].bytes());
      if (param_access_) param_access_.after(t, /*changed=*/true);
    }
  }
  next_start_ = 0;
  return norm;
}

}  // namespace seqmesh
