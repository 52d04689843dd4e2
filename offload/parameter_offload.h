// OffloadedParameterStore: the model's weights on SSD between uses (issue 15, item 1; DESIGN.md
// section 7; ZeRO-Infinity's parameter offload), behind runtime's ParameterStore seam.
//
// The model keeps its parameter arena (every params() view stays where it is), but a group's
// pages are resident only while the group is acquired: Release gives them back to the OS
// (ZeroAndRelease: they read as zero and cost nothing), and Acquire brings the bytes back from
// the group's extent of the SSD engine's unnamed scratch file. Prefetch reads the next group into
// one of two pinned staging buffers while the model computes with the current one, so Acquire
// only waits for what did not arrive in time and copies the staging buffer into the arena.
//
// Groups are ParamLayout's (the embedding, each layer, the final norm with the lm_head): with the
// model's protocol at most two are acquired at once (a tied lm_head and the embedding), so the
// resident weights are about two groups plus the staging buffers (two of the largest group).
// Pages that a group shares with its neighbour at either end (groups are 64-byte aligned, not
// page aligned) stay resident: at most two pages per group.
//
// The weights change outside a pass (initialization, a load, the optimizer's update); whoever
// changes them calls Capture(g) for each changed group (writes it out, then releases it), or
// Restore(g) first to read or change a group in place. Capture and Restore leave the bytes
// exactly as they were, so training through this store is bitwise training in memory
// (tests/offload/parameter_offload_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "offload/pinned_arena.h"
#include "offload/ssd_engine.h"
#include "runtime/parameter_store.h"

namespace seqmesh {

struct ParameterOffloadOptions {
  bool pin = true;       // lock the staging buffers (offload.pin_memory)
  SsdEngineOptions ssd;  // the scratch directory and the I/O settings
};

struct ParameterOffloadStats {
  uint64_t bytes_read = 0, bytes_written = 0;
  uint64_t acquires = 0, prefetch_hits = 0;  // Acquires whose group Prefetch had asked for
  double acquire_wait_s = 0;                 // Acquire blocked on a read (not hidden)
  double capture_s = 0;                      // Capture: copies and writes
};

class OffloadedParameterStore final : public ParameterStore {
 public:
  // `params`: the model's params() (views into its arena, which must outlive the store), and
  // its param_layout(). Every group starts resident and not yet captured.
  OffloadedParameterStore(std::vector<Tensor> params, ParamLayout layout,
                          ParameterOffloadOptions options);
  ~OffloadedParameterStore() override;
  OffloadedParameterStore(const OffloadedParameterStore&) = delete;
  OffloadedParameterStore& operator=(const OffloadedParameterStore&) = delete;

  std::span<const Tensor> Acquire(int group) override;
  void Release(int group) override;
  void Prefetch(int group) override;

  // Writes the group's bytes to its extent and releases its pages. The group must not be
  // acquired.
  void Capture(int group);
  void CaptureAll();
  // Brings a captured group back (its pages resident and exact) until Capture or Drop; a
  // resident group is left as it is.
  void Restore(int group);
  // Releases a restored group's pages without writing (its bytes did not change).
  void Drop(int group);

  // Hooks for the model's and the optimizer store's sweeps over params() (ParamAccess): a group
  // is restored (or, when every tensor will be overwritten, just claimed) at its first tensor,
  // and captured (changed) or dropped once all its tensors are done. Valid while the store is.
  ParamAccess Access();

  int num_groups() const { return static_cast<int>(layout_.groups.size()); }
  bool resident(int group) const;
  size_t group_bytes(int group) const;
  size_t largest_group_bytes() const { return largest_; }
  std::string Describe() const;
  ParameterOffloadStats TakeStats();
  // The arena range of a group: [begin, begin + bytes).
  std::byte* group_begin(int group) const;

 private:
  enum class State : uint8_t { kResident, kAcquired, kOffloaded };
  struct Staging {
    int group = -1;  // whose bytes it holds or moves; -1: free
    bool write = false;
    SsdEngine::Ticket ticket = 0;
    bool waited = true;
  };
  void Check(int group, const char* what) const;
  void Settle(Staging& s);   // waits for its request, once
  int FreeStaging();         // the next buffer, its request settled
  int StartRead(int group);  // into a free staging buffer; returns it
  void Bring(int group);     // wait for (or start and wait for) the read, copy into the arena

  std::vector<Tensor> params_;
  ParamLayout layout_;
  ParameterOffloadOptions options_;
  std::vector<std::byte*> begin_;
  std::vector<size_t> bytes_;
  std::vector<State> state_;
  std::vector<bool> written_;   // the extent holds the group's bytes
  std::vector<bool> from_ssd_;  // acquired from SSD: Release gives the pages back
  std::vector<int> group_of_;   // per tensor
  std::vector<size_t> done_;    // per group: tensors done in the current sweep
  std::vector<bool> changed_;   // per group: a tensor changed in the current sweep
  size_t largest_ = 0;
  PinnedArena arena_;
  std::unique_ptr<SsdEngine> engine_;
  std::vector<Staging> staging_;
  int next_staging_ = 0;
  ParameterOffloadStats stats_;
};

}  // namespace seqmesh
