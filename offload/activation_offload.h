// OffloadedActivationStore: the saved inputs of checkpointed layers outside the model's
// activation arena (issue 15, item 2; DESIGN.md section 7), in pinned host memory or on SSD.
//
// Per layer the store is told one of three things: not checkpointed (never saved), checkpointed
// and kept (Save keeps a view of the model's buffer, as the in-memory store does), or offloaded
// (Save copies the input out; the model then reuses the buffer: ModelOptions::offload_layers).
//
//   host: one pinned buffer per offloaded layer; Save copies into it, Fetch returns it. On the
//         CPU backend this moves bytes within the same memory (it is the path a GPU's
//         device-to-host copy takes, and a test of the protocol); it saves no memory there.
//   ssd:  one extent per offloaded layer in the SSD engine's unnamed scratch file, `write_buffers`
//         pinned staging buffers for the writes and prefetch_depth + 1 for the reads. Save copies
//         the input into a free write buffer and returns while the write is in flight (it waits
//         only when every write buffer is still busy). In backward the store reads the offloaded
//         layers in the order backward fetches them (highest first), up to prefetch_depth layers
//         ahead of the one in use, so a layer's bytes arrive while later layers compute.
//
// Fetch returns exactly the saved bytes (the SSD engine checks each extent's CRC32C), so
// training through this store is bitwise training in memory. A forward that follows an unfinished
// backward (an evaluation, an error) drops the reads in flight and starts over.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "offload/pinned_arena.h"
#include "offload/ssd_engine.h"
#include "runtime/activation_store.h"

namespace seqmesh {

enum class ActivationPlace : uint8_t {
  kNone,       // not checkpointed: the layer keeps all its activations; nothing is saved
  kRecompute,  // checkpointed, input kept in the model's memory
  kOffload,    // checkpointed, input copied out to the store's target
};
enum class ActivationTarget : uint8_t { kHost, kSsd };

struct ActivationOffloadOptions {
  ActivationTarget target = ActivationTarget::kSsd;
  std::vector<ActivationPlace> layers;  // one per model layer
  int64_t max_tokens = 0;               // rows of the largest saved input
  int64_t hidden = 0;                   // its columns (f32)
  int prefetch_depth = 2;               // ssd: offloaded layers read ahead of the one in use
  int write_buffers = 2;                // ssd: writes in flight before Save waits
  bool pin = true;                      // lock the arena (offload.pin_memory)
  SsdEngineOptions ssd;                 // ssd: the scratch directory and the I/O settings
};

// What the store did since it was made (or since TakeStats).
struct ActivationOffloadStats {
  uint64_t bytes_out = 0, bytes_in = 0;  // saved, fetched
  uint64_t saves = 0, fetches = 0;
  double save_wait_s = 0;   // Save blocked on a busy write buffer (transfer not hidden)
  double fetch_wait_s = 0;  // Fetch blocked on its read (transfer not hidden)
};

// training.checkpoint_activations = "selective": per layer keep, recompute or offload, choosing
// the counts that cost the least time per micro-batch within a memory budget (docs/OFFLOAD.md,
// "Activations"). Per layer, beside what every plan has:
//   keep       input + activations (no extra time)
//   recompute  input; + f (the forward again in backward)
//   offload    nothing resident; + f, + max(0, w - f) for the write that forward's next layer does
//              not hide, + max(0, r - (b + f)) for the read that backward's later layer does not
//              hide (w, r: the input's bytes over the write and read bandwidths)
// and once per plan: one set of activations for recomputation if any layer is checkpointed; with
// offloaded layers, the model's two shared input slots and the store's staging (ssd: write and
// read buffers; host: a pinned copy per offloaded layer, which saves nothing on the CPU backend,
// so the policy never offloads to host there). Offloaded layers are the lowest (written first,
// read last: the most compute to hide under), kept layers the highest (backward needs them
// first). Among plans of equal time the one with fewer offloaded layers wins (transfers that
// hide still cost I/O and the copy into staging), then the one with fewer resident bytes; the
// choice depends only on the inputs.
struct ActivationPolicyInput {
  int64_t layers = 0;
  double forward_ms = 0;   // one layer's forward at the micro-batch (what a recompute costs)
  double backward_ms = 0;  // one layer's backward (without its recompute)
  double layer_bytes = 0;  // Model::LayerActivationBytes
  double input_bytes = 0;  // Model::ResidualSlotBytes
  bool offload = false;    // offload.activations is set
  ActivationTarget target = ActivationTarget::kSsd;
  double write_gbps = 0, read_gbps = 0;  // to and from the target (1e9 bytes/s); > 0 if offload
  int write_buffers = 2, prefetch_depth = 2;  // the store's staging (ActivationOffloadOptions)
  double budget_bytes = 0;                    // what the layers' activations may take
};
struct ActivationPolicy {
  std::vector<ActivationPlace> places;  // per layer
  int64_t kept = 0, recomputed = 0, offloaded = 0;
  double extra_ms = 0;  // per micro-batch: recomputation and transfers not hidden
  double bytes = 0;     // resident: kept layers, saved inputs, recompute set, staging
  bool fits = false;    // bytes <= budget_bytes (false: the smallest plan, which does not fit)
  std::string Describe() const;  // "3 kept, 5 recomputed, 16 offloaded: +41.2 ms, 310 MiB"
};
ActivationPolicy ChooseActivationPlaces(const ActivationPolicyInput& in);
// The resident bytes and extra time of one choice of counts (kept top, offloaded bottom).
ActivationPolicy CostActivationPlaces(const ActivationPolicyInput& in, int64_t kept,
                                      int64_t offloaded);

// The SSD scratch directory's sequential bandwidths through the SSD engine (O_DIRECT, the
// engine's block size and queue depth): `bytes` written as 8 MiB extents, then read back; the
// file goes when the probe returns. For the policy when the cost file has no ssd_*_gbps.
struct SsdBandwidth {
  double write_gbps = 0, read_gbps = 0;
};
SsdBandwidth MeasureSsdBandwidth(const SsdEngineOptions& options, size_t bytes = size_t{64} << 20);

class OffloadedActivationStore final : public ActivationStore {
 public:
  explicit OffloadedActivationStore(ActivationOffloadOptions options);
  ~OffloadedActivationStore() override;
  OffloadedActivationStore(const OffloadedActivationStore&) = delete;
  OffloadedActivationStore& operator=(const OffloadedActivationStore&) = delete;

  void Save(int64_t layer, const Tensor& input) override;
  void Prefetch(int64_t layer) override;
  Tensor Fetch(int64_t layer) override;
  void Release(int64_t layer) override;

  // ModelOptions::offload_layers for these places.
  std::vector<bool> OffloadLayers() const;
  // One log line: what goes where, the staging buffers and the locked bytes.
  std::string Describe() const;
  size_t arena_bytes() const { return arena_.bytes(); }
  ActivationOffloadStats TakeStats();

 private:
  struct Read {
    int64_t layer = -1;
    int buffer = -1;
    SsdEngine::Ticket ticket = 0;
    bool waited = false;
  };
  void CheckLayer(int64_t layer, const char* what) const;
  void StartPass();  // drops the reads of an unfinished backward
  void TopUp();      // issues reads while a read buffer is free
  Read* FindRead(int64_t layer);

  ActivationOffloadOptions options_;
  size_t row_bytes_ = 0;
  std::vector<int64_t> offloaded_;  // offloaded layers, highest first (backward's order)
  std::vector<int> extent_;         // per layer: its extent or host buffer, -1 if not offloaded
  std::vector<Tensor> kept_;        // per layer: kRecompute's view
  std::vector<int64_t> rows_;       // per layer: rows of its last Save
  std::vector<bool> saved_;         // per layer: saved in this pass and not yet released
  PinnedArena arena_;
  std::unique_ptr<SsdEngine> engine_;
  std::vector<SsdEngine::Ticket> write_ticket_;  // per write buffer, 0: free
  int next_write_ = 0;
  std::vector<Read> reads_;      // in flight or held, in issue order
  std::vector<bool> read_busy_;  // per read buffer
  size_t next_issue_ = 0;        // index into offloaded_ of the next layer to read
  int64_t last_saved_ = -1;      // the highest layer saved in this pass
  bool backward_ = false;        // a Prefetch or Fetch came after the last Save
  ActivationOffloadStats stats_;
};

}  // namespace seqmesh
