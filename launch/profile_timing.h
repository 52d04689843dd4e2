// The timed pieces of `seqmesh profile` (launch/profile_command.cc): one layer's forward +
// backward at each length (one- and two-layer models, in an order that balances drift), and the
// point-to-point and memory-copy bandwidths the cost file records.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "launch/format.h"
#include "parallel/communicator.h"
#include "runtime/check.h"
#include "runtime/model.h"
#include "runtime/stats.h"
#include "scheduler/cost_model.h"

namespace seqmesh::launch::profile {

using Clock = std::chrono::steady_clock;

inline double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// --- compute and activations ---------------------------------------------------------------

struct LengthSample {
  int64_t tokens = 0;
  double one_layer_ms = 0, two_layer_ms = 0;  // whole forward + backward (see OrderBalancedMedian)
  double layer_ms = 0;                        // the same of the per-rep differences
  double spread = 0;     // (max - min) of the differences of one order, over layer_ms
  double act_bytes = 0;  // one layer's activations (arena accounting)
};

// The timings of one length over all rounds.
class LengthTimes {
 public:
  explicit LengthTimes(int64_t s) : s_(s) {}

  // One paired rep: the 1-layer and the 2-layer model (see the file comment), allocated afresh
  // for exactly s tokens, one document of s random tokens. `flip` runs the 2-layer model first
  // (alternated so that neither model always runs right after the other).
  //
  // Fresh models every rep, because where the arenas land matters: on the development VM one
  // model instance at 1,536 tokens ran 1.8x slower than its twin for a whole run (62.9 ms for
  // 1 layer, 69.1 ms for 2; no page faults; a different instance in the next run was normal).
  // A training run's placement is one draw of the same kind; the median over fresh draws is
  // the typical one. Each model's first step is untimed: it touches the arenas' pages, and the
  // first step after another length can be slower by itself (+17 ms of 40 at 1,536 tokens
  // after 16K), a cost of switching shapes that training pays per micro-batch, not per layer.
  void Rep(const ModelConfig& config, bool checkpoint, bool flip,
           const std::shared_ptr<Backend>& backend) {
    std::vector<Model> models;
    models.reserve(2);
    for (int layers : {1, 2}) {
      ModelConfig c = config;
      c.layers = layers;
      ModelOptions o;
      o.max_tokens = s_;
      o.checkpoint_layers.assign(layers, checkpoint);
      o.backend = backend;
      models.emplace_back(c, o);
      models.back().InitRandom(/*seed=*/1);
    }
    // Every target valid: the loss covers every row, as in training on packed documents.
    std::mt19937 rng(static_cast<uint32_t>(s_));
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab) - 1);
    std::vector<int32_t> tokens(s_), targets(s_);
    for (int32_t& t : tokens) t = token(rng);
    for (int64_t i = 0; i < s_; ++i) targets[i] = tokens[(i + 1) % s_];
    const int32_t cu_seqlens[2] = {0, static_cast<int32_t>(s_)};
    Batch batch;
    batch.tokens = tokens.data();
    batch.targets = targets.data();
    batch.cu_seqlens = cu_seqlens;
    batch.num_docs = 1;
    batch.num_tokens = s_;
    auto step = [&](Model& m) {
      m.ZeroGrad();  // outside the timed region: the trainer zeroes once per step, not per layer
      const auto t0 = Clock::now();
      m.Forward(batch, static_cast<float>(s_));
      m.Backward();
      return MsSince(t0);
    };
    for (Model& m : models) step(m);  // untimed, see above
    double t1, t2;
    if (flip) {
      t2 = step(models[1]);
      t1 = step(models[0]);
    } else {
      t1 = step(models[0]);
      t2 = step(models[1]);
    }
    one_.push_back(t1);
    two_.push_back(t2);
    flipped_.push_back(flip);
    act_bytes_ = static_cast<double>(models[1].activation_bytes()) -
                 static_cast<double>(models[0].activation_bytes());
    bytes_ = 0;
    for (const Model& m : models) bytes_ += 2 * m.param_bytes() + m.activation_bytes();
  }

  // Memory of the last rep's two models.
  size_t bytes() const { return bytes_; }

  LengthSample Result() const {
    std::vector<double> diff;
    for (size_t i = 0; i < one_.size(); ++i) diff.push_back(two_[i] - one_[i]);
    LengthSample out;
    out.tokens = s_;
    out.one_layer_ms = OrderBalancedMedian(one_);
    out.two_layer_ms = OrderBalancedMedian(two_);
    out.layer_ms = OrderBalancedMedian(diff);
    for (bool flip : {false, true}) {
      const std::vector<double> d = OfOrder(diff, flip);
      if (d.empty()) continue;
      const auto [lo, hi] = std::minmax_element(d.begin(), d.end());
      out.spread = std::max(out.spread, (*hi - *lo) / std::fabs(out.layer_ms));
    }
    out.act_bytes = act_bytes_;
    return out;
  }

 private:
  // The reps run in one order.
  std::vector<double> OfOrder(const std::vector<double>& v, bool flip) const {
    std::vector<double> out;
    for (size_t i = 0; i < v.size(); ++i)
      if (flipped_[i] == flip) out.push_back(v[i]);
    return out;
  }

  // The median over the reps of each order, averaged over the two orders: what is left of an
  // order effect (the model that runs second runs warmer) cancels in a difference only if both
  // orders weigh the same, which a plain median over an odd number of reps does not give.
  double OrderBalancedMedian(const std::vector<double>& v) const {
    const std::vector<double> a = OfOrder(v, false), b = OfOrder(v, true);
    if (a.empty() || b.empty()) return Median(v);
    return 0.5 * (Median(a) + Median(b));
  }

  int64_t s_;
  std::vector<double> one_, two_;  // ms per rep
  std::vector<bool> flipped_;      // per rep: the 2-layer model ran first
  double act_bytes_ = 0;
  size_t bytes_ = 0;
};

// --- bandwidth -------------------------------------------------------------------------------

struct LinkProfile {
  std::string how;                                  // for the file's comments
  int ranks = 1;                                    // in the MPI world
  std::vector<scheduler::ComputeSample> transfers;  // (bytes, one-way ms)
  double gbps = 0;
};

// Collective over the world: every rank calls it. Rank 0's result is the one written.
LinkProfile MeasureP2p(Communicator& comm, int reps);
// GB/s of one thread's memcpy of a 256 MiB buffer (far beyond the last-level cache).
double MeasureCopyGbps(int reps);

}  // namespace seqmesh::launch::profile
