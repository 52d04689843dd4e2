#include "offload/optimizer_store.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <sstream>

#include "runtime/check.h"
#include "runtime/trace.h"

namespace seqmesh {
namespace {

constexpr const char* kStaging = "sub-group staging";
constexpr const char* kGradStaging = "gradient staging";
constexpr const char* kAssembly = "gradient assembly";
constexpr const char* kState = "optimizer state";
constexpr const char* kStateTail = "optimizer state (last sub-group)";

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string Bytes(uint64_t b) {
  std::ostringstream out;
  out.precision(b >= (uint64_t{1} << 30) ? 2 : 1);
  out << std::fixed;
  if (b >= (uint64_t{1} << 30))
    out << b / double(uint64_t{1} << 30) << " GiB";
  else
    out << b / double(1 << 20) << " MiB";
  return out.str();
}

}  // namespace

double OffloadStats::OverlapEfficiency() const {
  const double shorter = std::min(compute_seconds, io_seconds);
  if (shorter <= 0) return 0;
  return std::clamp((compute_seconds + io_seconds - visit_seconds) / shorter, 0.0, 1.0);
}

OffloadStats& OffloadStats::operator+=(const OffloadStats& o) {
  bytes_read += o.bytes_read;
  bytes_written += o.bytes_written;
  visit_seconds += o.visit_seconds;
  compute_seconds += o.compute_seconds;
  io_seconds += o.io_seconds;
  stall_seconds += o.stall_seconds;
  handoff_seconds += o.handoff_seconds;
  return *this;
}

uint64_t OffloadedOptimizerStateStore::ArenaBytes(int64_t elems, const OffloadConfig& config,
                                                  bool holds_gradients) {
  if (elems == 0 || config.optimizer == OffloadDevice::kNone) return 0;
  const int64_t s = config.sub_group_size;
  const uint64_t largest = static_cast<uint64_t>(std::min(s, elems));
  if (config.optimizer == OffloadDevice::kNvme)
    return config.buffer_count * AlignUp(12 * largest) +
           (holds_gradients ? (config.buffer_count + kAssemblyBuffers) * AlignUp(4 * largest) : 0);
  const int64_t full = elems / s, tail = elems % s;
  return full * AlignUp(12 * static_cast<uint64_t>(s)) + AlignUp(12 * static_cast<uint64_t>(tail));
}

OffloadedOptimizerStateStore::OffloadedOptimizerStateStore(std::span<const Tensor> params,
                                                           const OffloadConfig& config, int rank)
    : config_(config), rank_(rank), sub_group_elems_(config.sub_group_size) {
  SM_CHECK(config.optimizer != OffloadDevice::kNone)
      << "OffloadedOptimizerStateStore needs offload.optimizer = \"cpu\" or \"nvme\"";
  for (const Tensor& p : params) {
    CheckDType(p, DType::kF32);
    shapes_.push_back(p.shape());
    elems_ += p.numel();
  }
  for (std::vector<OptimizerSlice>& slices : SubGroups(params, sub_group_elems_)) {
    Group g;
    for (const OptimizerSlice& s : slices) g.elems += s.count;
    g.slices = std::move(slices);
    if (g.elems > 0) groups_.push_back(std::move(g));
  }
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t k = 0; k < groups_[g].slices.size(); ++k) {
      const size_t t = groups_[g].slices[k].tensor;
      if (slices_of_.size() <= t) slices_of_.resize(t + 1);
      slices_of_[t].push_back({static_cast<int>(g), k});
    }
  slices_of_.resize(params.size());
  Build();
}

void OffloadedOptimizerStateStore::Build() {
  engine_.reset();  // before the arena whose buffers it registered
  arena_ = PinnedArena();
  if (groups_.empty()) return;
  const size_t largest = static_cast<size_t>(groups_.front().elems);
  const bool pin = config_.pin_memory;
  const int count = static_cast<int>(config_.buffer_count);
  if (config_.optimizer == OffloadDevice::kNvme) {
    std::vector<PinnedPool> pools = {{kStaging, 12 * largest, count}};
    if (holds_gradients_) {
      pools.push_back({kGradStaging, 4 * largest, count});
      pools.push_back({kAssembly, 4 * largest, kAssemblyBuffers});
    }
    arena_ = PinnedArena(std::move(pools), pin);
    // Extents 0..G-1: each sub-group's master | m | v; G..2G-1: its gradients (hand-off).
    std::vector<size_t> extents;
    for (const Group& g : groups_) extents.push_back(12 * static_cast<size_t>(g.elems));
    if (holds_gradients_)
      for (const Group& g : groups_) extents.push_back(4 * static_cast<size_t>(g.elems));
    SsdEngineOptions options;
    options.dir = config_.nvme_path;
    options.block_bytes = static_cast<size_t>(config_.block_size);
    options.queue_depth = static_cast<int>(config_.queue_depth);
    engine_ = std::make_unique<SsdEngine>(options, extents, &arena_);
  } else {
    std::vector<PinnedPool> pools;
    const int full =
        static_cast<int>(std::count_if(groups_.begin(), groups_.end(), [&](const Group& g) {
          return g.elems == static_cast<int64_t>(largest);
        }));
    pools.push_back({kState, 12 * largest, full});
    if (full < static_cast<int>(groups_.size()))
      pools.push_back({kStateTail, 12 * static_cast<size_t>(groups_.back().elems), 1});
    arena_ = PinnedArena(std::move(pools), pin);
  }
}

void OffloadedOptimizerStateStore::HoldGradients() {
  SM_CHECK(CanHoldGradients()) << "only an nvme optimizer store holds gradients";
  SM_CHECK(!started_) << "HoldGradients() after the optimizer state started";
  holds_gradients_ = true;
  assembly_write_.assign(kAssemblyBuffers, std::nullopt);
  assembly_owner_.assign(kAssemblyBuffers, -1);
  Build();
}

// A free assembly buffer for sub-group g: one no group is filling, once its last write is done.
std::byte* OffloadedOptimizerStateStore::AssemblyBuffer(int g) {
  Group& group = groups_[g];
  if (group.assembly < 0) {
    int pick = -1;
    for (int b = 0; b < kAssemblyBuffers && pick < 0; ++b)
      if (assembly_owner_[b] < 0 && !assembly_write_[b]) pick = b;
    for (int b = 0; b < kAssemblyBuffers && pick < 0; ++b)
      if (assembly_owner_[b] < 0) pick = b;
    SM_CHECK(pick >= 0) << "offload: gradients of more than " << kAssemblyBuffers
                        << " sub-groups came in partially at once (buckets finished out of order)";
    if (auto& w = assembly_write_[pick]) {
      const double t = Now();
      engine_->Wait(*w);
      stats_.stall_seconds += Now() - t;
      w.reset();
    }
    assembly_owner_[pick] = g;
    group.assembly = pick;
  }
  return arena_.buffer(kAssembly, group.assembly).data();
}

void OffloadedOptimizerStateStore::GradientsReady(std::span<const Tensor> grads, size_t first,
                                                  size_t last) {
  SM_CHECK(holds_gradients_) << "GradientsReady without HoldGradients()";
  SM_CHECK(first <= last && last <= slices_of_.size())
      << "GradientsReady: parameters [" << first << ", " << last << ") of " << slices_of_.size();
  const double t0 = Now();
  for (size_t t = first; t < last; ++t) {
    CheckDType(grads[t], DType::kF32);
    SM_CHECK(grads[t].shape() == shapes_[t])
        << "GradientsReady: gradient '" << grads[t].name() << "' does not match its parameter";
    for (const auto& [g, k] : slices_of_[t]) {
      Group& group = groups_[g];
      if (group.grads_in == group.elems) group.grads_in = 0;  // a new step (the last skipped)
      int64_t at = 0;
      for (size_t j = 0; j < k; ++j) at += group.slices[j].count;
      const OptimizerSlice& s = group.slices[k];
      float* dst = reinterpret_cast<float*>(AssemblyBuffer(g)) + at;
      std::memcpy(dst, grads[t].f32() + s.begin, s.count * sizeof(float));
      group.grads_in += s.count;
      if (group.grads_in == group.elems) {
        const int b = group.assembly;
        assembly_write_[b] = engine_->Write(static_cast<int>(groups_.size()) + g,
                                            arena_.buffer(kAssembly, b).data(), 4 * group.elems);
        assembly_owner_[b] = -1;
        group.assembly = -1;
      }
    }
  }
  stats_.handoff_seconds += Now() - t0;
}

OffloadedOptimizerStateStore::~OffloadedOptimizerStateStore() = default;

std::string OffloadedOptimizerStateStore::Describe() const {
  std::ostringstream out;
  out << "optimizer state of rank " << rank_ << ": " << Bytes(state_bytes());
  if (engine_)
    out << " on SSD (" << engine_->description() << "), " << config_.buffer_count
        << " staging buffers of " << Bytes(12 * groups_.front().elems);
  else
    out << " in host memory";
  out << ", " << Bytes(arena_.bytes())
      << (arena_.pinned() ? " locked" : " not locked (pin_memory = false)");
  return out.str();
}

OffloadStats OffloadedOptimizerStateStore::TakeStats() {
  OffloadStats out = stats_;
  stats_ = {};
  if (engine_) {  // every byte moved since the last call, the gradients' hand-off included
    const SsdEngineStats now = engine_->stats();
    out.bytes_read = now.bytes_read - taken_.bytes_read;
    out.bytes_written = now.bytes_written - taken_.bytes_written;
    taken_ = now;
  }
  return out;
}

void OffloadedOptimizerStateStore::Point(Group& group, std::byte* region,
                                         const std::byte* grad_region,
                                         std::span<const Tensor> grads) const {
  float* base = reinterpret_cast<float*>(region);
  const float* held = reinterpret_cast<const float*>(grad_region);
  const int64_t n = group.elems;
  int64_t at = 0;
  for (OptimizerSlice& s : group.slices) {
    s.master = base + at;
    s.m = base + n + at;
    s.v = base + 2 * n + at;
    s.grad = held ? held + at : grads.empty() ? nullptr : grads[s.tensor].f32() + s.begin;
    at += s.count;
  }
}

// The state as it starts (and as a load starts from): master = the compute parameters, m = v = 0.
void OffloadedOptimizerStateStore::Fill(const Group& group, std::byte* region,
                                        std::span<const Tensor> params) const {
  float* base = reinterpret_cast<float*>(region);
  int64_t at = 0;
  for (const OptimizerSlice& s : group.slices) {
    std::memcpy(base + at, params[s.tensor].f32() + s.begin, s.count * sizeof(float));
    at += s.count;
  }
  std::memset(base + group.elems, 0, 2 * group.elems * sizeof(float));
}

void OffloadedOptimizerStateStore::Compute(Group& group, std::byte* region,
                                           const std::byte* grad_region,
                                           std::span<const Tensor> params,
                                           std::span<const Tensor> grads, StateAccess access,
                                           const Visitor& visit) {
  const double t0 = Now();
  // The compute parameters this sub-group reads (Fill) or writes (an update), swept tensor by
  // tensor for a parameter store that keeps them off the device (param_access_).
  const bool reads = !started_ || access == StateAccess::kOverwrite;
  const bool writes = access == StateAccess::kUpdate;
  if (param_access_ && (reads || writes)) {
    for (const OptimizerSlice& s : group.slices)
      if (s.begin == 0) param_access_.before(s.tensor, /*overwrite=*/!reads);
  }
  if (reads) Fill(group, region, params);
  Point(group, region, grad_region, grads);
  visit(group.slices);
  if (writes)
    for (const OptimizerSlice& s : group.slices)
      std::memcpy(params[s.tensor].f32() + s.begin, s.master, s.count * sizeof(float));
  if (param_access_ && (reads || writes)) {
    for (const OptimizerSlice& s : group.slices)
      if (s.begin + s.count == params[s.tensor].numel()) param_access_.after(s.tensor, writes);
  }
  stats_.compute_seconds += Now() - t0;
}

void OffloadedOptimizerStateStore::Visit(std::span<const Tensor> params,
                                         std::span<const Tensor> grads, StateAccess access,
                                         const Visitor& visit) {
  grads = CheckVisit(params, grads, access, shapes_);
  const double t0 = Now();
  if (engine_) {
    const double active = engine_->stats().active_seconds;
    VisitNvme(params, grads, access, visit);
    stats_.io_seconds += engine_->stats().active_seconds - active;
  } else {
    VisitPinned(params, grads, access, visit);
  }
  stats_.visit_seconds += Now() - t0;
  // A read before the first update or load sees the starting state and does not start it: the
  // compute parameters it saw may not be final yet (GradSync copies them into its shard at the
  // update).
  if (access != StateAccess::kRead) started_ = true;
}

void OffloadedOptimizerStateStore::VisitPinned(std::span<const Tensor> params,
                                               std::span<const Tensor> grads, StateAccess access,
                                               const Visitor& visit) {
  const int64_t largest = groups_.empty() ? 0 : groups_.front().elems;
  int full = 0;
  for (Group& g : groups_) {
    std::byte* region = g.elems == largest ? arena_.buffer(kState, full++).data()
                                           : arena_.buffer(kStateTail).data();
    Compute(g, region, nullptr, params, grads, access, visit);
  }
}

void OffloadedOptimizerStateStore::VisitNvme(std::span<const Tensor> params,
                                             std::span<const Tensor> grads, StateAccess access,
                                             const Visitor& visit) {
  const int count = static_cast<int>(config_.buffer_count);
  const int groups = static_cast<int>(groups_.size());
  const bool read = started_ && access != StateAccess::kOverwrite;
  const bool write = access != StateAccess::kRead;
  const bool read_grads = holds_gradients_ && access == StateAccess::kUpdate;
  if (read_grads) {
    for (int g = 0; g < groups; ++g)
      SM_CHECK(groups_[g].grads_in == groups_[g].elems)
          << "offload: the update came before the gradients of sub-group " << g << " ("
          << groups_[g].grads_in << " of " << groups_[g].elems << " elements handed in)";
    for (int g = 0; g < groups; ++g) groups_[g].grads_in = 0;
  }
  std::vector<std::optional<SsdEngine::Ticket>> writing(count);  // per staging buffer
  auto buffer = [&](int g) { return arena_.buffer(kStaging, g % count).data(); };
  auto grad_buffer = [&](int g) { return arena_.buffer(kGradStaging, g % count).data(); };
  auto wait = [&](SsdEngine::Ticket t) {
    const trace::Scope s("wait for SSD", "offload");
    const double w = Now();
    engine_->Wait(t);
    stats_.stall_seconds += Now() - w;
  };
  auto free_buffer = [&](int g) {  // the buffer of sub-group g is no longer being written
    if (auto& w = writing[g % count]) {
      wait(*w);
      w.reset();
    }
  };
  // Sub-group g's reads in flight: its state, its gradients.
  std::optional<SsdEngine::Ticket> next_state, next_grads;
  auto issue_reads = [&](int g) {
    free_buffer(g);
    if (read) next_state = engine_->Read(g, buffer(g));
    if (read_grads) next_grads = engine_->Read(groups + g, grad_buffer(g));
  };
  try {
    if ((read || read_grads) && groups > 0) issue_reads(0);
    for (int g = 0; g < groups; ++g) {
      const std::optional<SsdEngine::Ticket> state = next_state, grad = next_grads;
      if ((read || read_grads) && g + 1 < groups) issue_reads(g + 1);
      if (state) wait(*state);
      if (grad) wait(*grad);
      if (!read && !read_grads) free_buffer(g);
      {
        const trace::Scope s("sub-group", "offload",
                             {trace::Int("group", g), trace::Int("elements", groups_[g].elems)});
        Compute(groups_[g], buffer(g), read_grads ? grad_buffer(g) : nullptr, params, grads, access,
                visit);
      }
      if (write) writing[g % count] = engine_->Write(g, buffer(g), 12 * groups_[g].elems);
    }
    for (auto& w : writing)
      if (w) wait(*w);
  } catch (...) {
    engine_->WaitAll();  // nothing may still target the staging buffers
    throw;
  }
}

}  // namespace seqmesh
