// OffloadedOptimizerStateStore: AdamW's state (master weights and both moments) out of the
// training process's ordinary memory (DESIGN.md section 7; issue 14): in pinned host memory
// (offload.optimizer = "cpu") or in the rank's extent file on SSD ("nvme").
//
// Layout: the parameters are cut into sub-groups of at most offload.sub_group_size elements
// (runtime's SubGroups); sub-group g of n elements is one region of 12n bytes, master | m | v, an
// arena buffer (cpu) or an extent of the SSD engine (nvme).
//
// The nvme pipeline (Visit, kUpdate), over buffer_count >= 2 staging buffers of the arena:
//   read g+1 (into buffer (g+1) % B, once that buffer's write of g+1-B is done)
//   || update g (visit, then the master weights copied to the compute parameters)
//   || write g-1 (issued as soon as g-1 was updated)
// on the SSD engine's I/O thread; the caller's thread only computes and waits. kRead reads the
// same way and writes nothing; kOverwrite reads nothing and writes every sub-group.
//
// Gradients (nvme, a world of one: GradSync's hand-off): HoldGradients() adds one extent per
// sub-group for its gradients (4n bytes). GradientsReady copies each finished parameter's
// gradient slices into an assembly buffer of their sub-group (at most kAssemblyBuffers at once:
// the sub-groups that straddle a bucket boundary) and writes a sub-group's extent as soon as all
// its slices are in. The update then reads state and gradient of sub-group g+1 together.
//
// The state starts at the first Visit: m = v = 0 and the master weights = the compute
// parameters as they are then (after a model's initialization or load); from then on the
// store's master weights are the truth and each update copies them to the compute parameters.
// A checkpoint load (kOverwrite) takes the compute parameters as master weights again.
//
// Every update is the visitor's arithmetic on the same values as in memory, so offloaded and
// in-memory training are bitwise equal (tests/offload/optimizer_store_test.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "offload/pinned_arena.h"
#include "offload/ssd_engine.h"
#include "runtime/optimizer_state_store.h"
#include "runtime/run_config.h"

namespace seqmesh {

// What the store did over some visits (per step: TakeStats).
struct OffloadStats {
  uint64_t bytes_read = 0, bytes_written = 0;
  double visit_seconds = 0;    // wall time inside Visit
  double compute_seconds = 0;  // the visitor and the master copies
  double io_seconds = 0;       // the engine's active time (>= 1 request unfinished)
  double stall_seconds = 0;    // the caller waiting for I/O
  double handoff_seconds = 0;  // copying gradients out during backward (GradientsReady)
  // (compute + io - visit) / min(compute, io), in [0, 1]: 1 when the shorter of the two hides
  // entirely under the longer; 0 without I/O.
  double OverlapEfficiency() const;
  OffloadStats& operator+=(const OffloadStats& other);
};

class OffloadedOptimizerStateStore final : public OptimizerStateStore {
 public:
  // config.optimizer must be kCpu or kNvme. `rank` names the scratch file's owner in messages.
  OffloadedOptimizerStateStore(std::span<const Tensor> params, const OffloadConfig& config,
                               int rank = 0);
  ~OffloadedOptimizerStateStore() override;

  void Visit(std::span<const Tensor> params, std::span<const Tensor> grads, StateAccess access,
             const Visitor& visit) override;
  int64_t sub_group_elems() const override { return sub_group_elems_; }
  bool CanHoldGradients() const override { return engine_ != nullptr; }
  void HoldGradients() override;
  void GradientsReady(std::span<const Tensor> grads, size_t first, size_t last) override;
  static constexpr int kAssemblyBuffers = 4;

  // The statistics since the last call, and resets them.
  OffloadStats TakeStats();
  // Parameter offload: Visit sweeps the compute parameters it reads or writes through these
  // (runtime/parameter_store.h), one tensor at a time in parameter order.
  void SetParamAccess(ParamAccess access) { param_access_ = std::move(access); }
  const PinnedArena& arena() const { return arena_; }
  // One line for the log: where the state lives and what it costs in memory.
  std::string Describe() const;
  // Bytes of state (12 per element) and of the pinned arena.
  uint64_t state_bytes() const { return 12 * static_cast<uint64_t>(elems_); }

  // The arena an nvme store of these parameters would lock (sizes the memory estimate).
  static uint64_t ArenaBytes(int64_t elems, const OffloadConfig& config,
                             bool holds_gradients = false);

 private:
  struct Group {
    std::vector<OptimizerSlice> slices;  // tensor, begin, count; pointers set per visit
    int64_t elems = 0;
    int64_t grads_in = 0;  // gradient elements handed in this step
    int assembly = -1;     // its assembly buffer while gradients come in
  };
  void Build();  // the arena and, for nvme, the engine, for the layout and holds_gradients_
  std::byte* AssemblyBuffer(int g);
  // Sets the slices' pointers into region (master | m | v) and grad_region (the gradients the
  // store holds) or, if that is null, grads.
  void Point(Group& group, std::byte* region, const std::byte* grad_region,
             std::span<const Tensor> grads) const;
  void Fill(const Group& group, std::byte* region, std::span<const Tensor> params) const;
  void VisitPinned(std::span<const Tensor> params, std::span<const Tensor> grads,
                   StateAccess access, const Visitor& visit);
  void VisitNvme(std::span<const Tensor> params, std::span<const Tensor> grads, StateAccess access,
                 const Visitor& visit);
  void Compute(Group& group, std::byte* region, const std::byte* grad_region,
               std::span<const Tensor> params, std::span<const Tensor> grads, StateAccess access,
               const Visitor& visit);

  OffloadConfig config_;
  int rank_ = 0;
  std::vector<Shape> shapes_;
  std::vector<Group> groups_;
  int64_t sub_group_elems_ = 0;
  int64_t elems_ = 0;
  ParamAccess param_access_;
  bool started_ = false;  // the state was initialized (first Visit)
  bool holds_gradients_ = false;
  std::vector<std::vector<std::pair<int, size_t>>> slices_of_;    // tensor -> (group, slice)
  std::vector<std::optional<SsdEngine::Ticket>> assembly_write_;  // per assembly buffer
  std::vector<int> assembly_owner_;                               // group, or -1
  PinnedArena arena_;
  std::unique_ptr<SsdEngine> engine_;  // nvme only
  OffloadStats stats_;
  SsdEngineStats taken_;  // the engine's totals at the last TakeStats
};

}  // namespace seqmesh
