#include "parallel/grad_sync.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/check.h"
#include "runtime/cpu/vec.h"

namespace seqmesh {

GradSync::GradSync(Communicator& comm, const std::vector<Tensor>& params,
                   const std::vector<Tensor>& grads, const AdamWConfig& config,
                   std::vector<size_t> bucket_ends, std::vector<int> start_order)
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
  flat_grad_.assign(flat, 0.0f);  // padding stays zero
  flat_param_.assign(flat, 0.0f);
  shard_grad_.assign(shard_total, 0.0f);
  BuildPieces();
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

void GradSync::BuildPieces() {
  for (const Bucket& b : buckets_) {
    float* shard_param = flat_param_.data() + b.flat_offset + comm_.rank() * b.shard;
    ForEachShardPiece(b, [&](size_t t, int64_t in_tensor, int64_t in_shard, int64_t len) {
      pieces_.push_back({t, in_tensor});
      const std::string name = params_[t].name() + "@" + std::to_string(in_tensor);
      piece_params_.emplace_back(name, DType::kF32, Shape{len}, shard_param + in_shard);
      piece_grads_.emplace_back("grad." + name, DType::kF32, Shape{len},
                                shard_grad_.data() + b.shard_offset + in_shard);
    });
  }
  state_ = std::make_unique<InMemoryOptimizerStateStore>(piece_params_);
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
    float* flat = flat_grad_.data() + b.flat_offset;
    for (size_t t = b.first; t < b.last; ++t)
      std::memcpy(flat + tensor_offset_[t], grads_[t].f32(), grads_[t].bytes());
    b.work =
        comm_.StartReduceScatter(flat, shard_grad_.data() + b.shard_offset, b.shard, DType::kF32);
    b.started = true;
  }
}

void GradSync::ForEachMomentPiece(
    const std::function<void(size_t, int64_t, const float*, const float*, int64_t)>& fn) const {
  // One whole sub-group per piece: the store hands out the state; nothing is written.
  state_->Visit(piece_params_, piece_grads_, 0, [&](std::span<const OptimizerSlice> slices) {
    for (const OptimizerSlice& s : slices)
      fn(pieces_[s.tensor].tensor, pieces_[s.tensor].offset + s.begin, s.m, s.v, s.count);
  });
}

void GradSync::LoadMoments(const std::vector<const float*>& m, const std::vector<const float*>& v,
                           int64_t step) {
  SM_CHECK(m.size() == params_.size() && v.size() == params_.size())
      << "GradSync::LoadMoments: " << m.size() << " and " << v.size() << " moment tensors for "
      << params_.size() << " parameters";
  SM_CHECK(step >= 0) << "GradSync::LoadMoments: negative optimizer step " << step;
  state_->Visit(piece_params_, piece_grads_, 0, [&](std::span<const OptimizerSlice> slices) {
    for (const OptimizerSlice& s : slices) {
      const Piece& p = pieces_[s.tensor];
      std::memcpy(s.m, m[p.tensor] + p.offset + s.begin, s.count * sizeof(float));
      std::memcpy(s.v, v[p.tensor] + p.offset + s.begin, s.count * sizeof(float));
    }
  });
  step_ = step;
}

void GradSync::Progress() {
  for (Bucket& b : buckets_)
    if (b.started && b.work.pending()) comm_.Test(b.work);
}

void GradSync::FinishReductions() {
  for (Bucket& b : buckets_) b.ready = true;
  StartReady();
  for (Bucket& b : buckets_) comm_.Wait(b.work);
}

double GradSync::Step(float lr, float max_norm) {
  FinishReductions();

  // Global norm: this rank's shards hold disjoint parts of the summed gradient (padding is 0).
  // A world of one holds the whole gradient, the model's own: its norm is GlobalNorm's, the
  // unsharded AdamW's, so `seqmesh train` steps exactly as it did before it ran HdpStep.
  double norm = 0.0;
  if (comm_.size() == 1) {
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

  // The same per-element update as AdamW::Step.
  ++step_;
  const cpu::AdamWStep base = AdamWStepFor(config_, step_, lr, scale);
  // The master weights are this rank's copy of the parameters in its shard.
  for (size_t k = 0; k < pieces_.size(); ++k)
    std::memcpy(piece_params_[k].f32(), params_[pieces_[k].tensor].f32() + pieces_[k].offset,
                piece_params_[k].bytes());
  state_->Visit(
      piece_params_, piece_grads_, sub_group_elems_, [&](std::span<const OptimizerSlice> slices) {
        for (const OptimizerSlice& sl : slices) {
          cpu::AdamWStep s = base;
          s.weight_decay =
              params_[pieces_[sl.tensor].tensor].shape().ndim() >= 2 ? config_.weight_decay : 0.0f;
          cpu::Vec().adamw(sl.master, sl.grad, sl.m, sl.v, sl.count, s);
        }
      });
  for (Bucket& b : buckets_) {
    float* shard_param = flat_param_.data() + b.flat_offset + comm_.rank() * b.shard;
    b.work =
        comm_.StartAllGather(shard_param, flat_param_.data() + b.flat_offset, b.shard, DType::kF32);
  }
  for (Bucket& b : buckets_) {
    comm_.Wait(b.work);
    const float* flat = flat_param_.data() + b.flat_offset;
    for (size_t t = b.first; t < b.last; ++t)
      std::memcpy(params_[t].f32(), flat + tensor_offset_[t], params_[t].bytes());
    b.started = false;
    b.ready = false;
  }
  next_start_ = 0;
  return norm;
}

}  // namespace seqmesh
