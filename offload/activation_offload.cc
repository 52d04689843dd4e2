#include "offload/activation_offload.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <optional>
#include <sstream>

#include "runtime/check.h"

namespace seqmesh {
namespace {

constexpr const char* kHostPool = "activation slots";
constexpr const char* kWritePool = "activation writes";
constexpr const char* kReadPool = "activation reads";

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string MiB(size_t bytes) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << bytes / double(1 << 20) << " MiB";
  return s.str();
}

}  // namespace

ActivationPolicy CostActivationPlaces(const ActivationPolicyInput& in, int64_t kept,
                                      int64_t offloaded) {
  SM_CHECK(kept >= 0 && offloaded >= 0 && kept + offloaded <= in.layers)
      << "activation policy: " << kept << " kept and " << offloaded << " offloaded of " << in.layers
      << " layers";
  ActivationPolicy p;
  p.kept = kept;
  p.offloaded = offloaded;
  p.recomputed = in.layers - kept - offloaded;
  for (int64_t l = 0; l < in.layers; ++l) {
    p.places.push_back(l < offloaded          ? ActivationPlace::kOffload
                       : l < in.layers - kept ? ActivationPlace::kRecompute
                                              : ActivationPlace::kNone);
  }
  const double o = static_cast<double>(offloaded), c = static_cast<double>(p.recomputed);
  const double k = static_cast<double>(kept), f = in.forward_ms;
  p.bytes = k * (in.input_bytes + in.layer_bytes) + c * in.input_bytes;
  if (offloaded + p.recomputed > 0) p.bytes += in.layer_bytes;  // the recompute set
  p.extra_ms = (c + o) * f;
  if (offloaded > 0) {
    p.bytes += (offloaded == 1 ? 1 : 2) * in.input_bytes;  // the model's shared input slots
    if (in.target == ActivationTarget::kHost) {
      p.bytes += o * in.input_bytes;
    } else {
      const double staging =
          std::min<double>(in.write_buffers, o) + std::min<double>(in.prefetch_depth + 1, o);
      p.bytes += staging * in.input_bytes;
    }
    const double w = in.input_bytes / (in.write_gbps * 1e6),
                 r = in.input_bytes / (in.read_gbps * 1e6);
    p.extra_ms += o * (std::max(0.0, w - f) + std::max(0.0, r - (in.backward_ms + f)));
  }
  p.fits = p.bytes <= in.budget_bytes;
  return p;
}

ActivationPolicy ChooseActivationPlaces(const ActivationPolicyInput& in) {
  SM_CHECK(in.layers >= 1 && in.forward_ms >= 0 && in.backward_ms >= 0 && in.layer_bytes > 0 &&
           in.input_bytes > 0)
      << "activation policy: layers, times and bytes must be positive";
  SM_CHECK(!in.offload || (in.write_gbps > 0 && in.read_gbps > 0))
      << "activation policy: offloading needs the target's write and read bandwidths";
  std::optional<ActivationPolicy> best, smallest;
  const int64_t most_offloaded = in.offload ? in.layers : 0;
  for (int64_t o = 0; o <= most_offloaded; ++o) {
    for (int64_t k = 0; k + o <= in.layers; ++k) {
      ActivationPolicy p = CostActivationPlaces(in, k, o);
      if (!smallest || p.bytes < smallest->bytes) smallest = p;
      if (!p.fits) continue;
      // At equal time: fewer offloaded layers (no I/O that memory does not need), then fewer
      // bytes.
      if (!best || p.extra_ms < best->extra_ms ||
          (p.extra_ms == best->extra_ms &&
           (p.offloaded < best->offloaded ||
            (p.offloaded == best->offloaded && p.bytes < best->bytes))))
        best = p;
    }
  }
  return best ? *best : *smallest;
}

std::string ActivationPolicy::Describe() const {
  std::ostringstream os;
  os << kept << " kept, " << recomputed << " recomputed, " << offloaded << " offloaded: +"
     << std::fixed << std::setprecision(1) << extra_ms << " ms per micro-batch, "
     << std::setprecision(0) << bytes / 1048576.0 << " MiB";
  return os.str();
}

SsdBandwidth MeasureSsdBandwidth(const SsdEngineOptions& options, size_t bytes) {
  constexpr size_t kExtent = size_t{8} << 20;
  const int extents = static_cast<int>(std::max<size_t>(1, bytes / kExtent));
  PinnedArena arena({{"probe", kExtent, 1}}, /*pin=*/false);
  const std::span<std::byte> buffer = arena.buffer("probe");
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<std::byte>(i * 131 + 7);
  SsdEngine engine(options, std::vector<size_t>(extents, kExtent), &arena);
  const double total = static_cast<double>(extents) * kExtent;
  auto t0 = std::chrono::steady_clock::now();
  for (int e = 0; e < extents; ++e) engine.Write(e, buffer.data(), kExtent);
  engine.WaitAll();
  const double write_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Reads land in the one buffer, waited one by one (each checks its CRC32C against the write).
  t0 = std::chrono::steady_clock::now();
  for (int e = 0; e < extents; ++e) engine.Wait(engine.Read(e, buffer.data()));
  const double read_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {total / std::max(write_s, 1e-9) / 1e9, total / std::max(read_s, 1e-9) / 1e9};
}

OffloadedActivationStore::OffloadedActivationStore(ActivationOffloadOptions options)
    : options_(std::move(options)) {
  const int64_t layers = static_cast<int64_t>(options_.layers.size());
  SM_CHECK(options_.max_tokens >= 1 && options_.hidden >= 1)
      << "activation offload: max_tokens and hidden must be >= 1, got " << options_.max_tokens
      << " and " << options_.hidden;
  SM_CHECK(options_.prefetch_depth >= 0)
      << "offload.prefetch_depth must be >= 0, got " << options_.prefetch_depth;
  SM_CHECK(options_.write_buffers >= 1)
      << "activation offload: write_buffers must be >= 1, got " << options_.write_buffers;
  row_bytes_ = static_cast<size_t>(options_.hidden) * sizeof(float);
  const size_t slot_bytes = row_bytes_ * static_cast<size_t>(options_.max_tokens);
  extent_.assign(layers, -1);
  kept_.resize(layers);
  rows_.assign(layers, 0);
  saved_.assign(layers, false);
  for (int64_t l = layers - 1; l >= 0; --l) {
    if (options_.layers[l] == ActivationPlace::kOffload) offloaded_.push_back(l);
  }
  for (size_t i = 0; i < offloaded_.size(); ++i)
    extent_[offloaded_[i]] = static_cast<int>(offloaded_.size() - 1 - i);  // lowest layer: 0
  if (offloaded_.empty()) return;
  const int count = static_cast<int>(offloaded_.size());
  if (options_.target == ActivationTarget::kHost) {
    arena_ = PinnedArena({{kHostPool, slot_bytes, count}}, options_.pin);
    return;
  }
  const int reads = std::min(options_.prefetch_depth + 1, count);
  const int writes = std::min(options_.write_buffers, count);
  arena_ =
      PinnedArena({{kWritePool, slot_bytes, writes}, {kReadPool, slot_bytes, reads}}, options_.pin);
  engine_ =
      std::make_unique<SsdEngine>(options_.ssd, std::vector<size_t>(count, slot_bytes), &arena_);
  write_ticket_.assign(writes, 0);
  read_busy_.assign(reads, false);
}

OffloadedActivationStore::~OffloadedActivationStore() {
  if (engine_) {
    try {
      engine_->WaitAll();
    } catch (...) {  // an I/O error with nobody left to hear it; the file goes with the engine
    }
  }
}

void OffloadedActivationStore::CheckLayer(int64_t layer, const char* what) const {
  SM_CHECK(layer >= 0 && layer < static_cast<int64_t>(options_.layers.size()))
      << "activation store: " << what << " of layer " << layer << "; the model has "
      << options_.layers.size() << " layers";
  SM_CHECK(options_.layers[layer] != ActivationPlace::kNone)
      << "activation store: " << what << " of layer " << layer
      << ", which is not checkpointed (it keeps its activations)";
}

std::vector<bool> OffloadedActivationStore::OffloadLayers() const {
  std::vector<bool> out;
  for (ActivationPlace p : options_.layers) out.push_back(p == ActivationPlace::kOffload);
  return out;
}

void OffloadedActivationStore::StartPass() {
  for (Read& r : reads_) {
    if (!r.waited) engine_->Wait(r.ticket);
  }
  reads_.clear();
  std::fill(read_busy_.begin(), read_busy_.end(), false);
  std::fill(saved_.begin(), saved_.end(), false);
  next_issue_ = 0;
  last_saved_ = -1;
  backward_ = false;
}

void OffloadedActivationStore::Save(int64_t layer, const Tensor& input) {
  CheckLayer(layer, "Save");
  if (backward_ || layer <= last_saved_) StartPass();
  last_saved_ = layer;
  SM_CHECK(input.dtype() == DType::kF32 && input.shape().ndim() == 2 &&
           input.dim(1) == options_.hidden && input.dim(0) <= options_.max_tokens)
      << "activation store: layer " << layer << "'s input " << input.name()
      << " is not f32 (tokens <= " << options_.max_tokens << ", " << options_.hidden << ")";
  saved_[layer] = true;
  rows_[layer] = input.dim(0);
  if (options_.layers[layer] == ActivationPlace::kRecompute) {
    kept_[layer] = input;
    return;
  }
  const size_t bytes = input.bytes();
  ++stats_.saves;
  stats_.bytes_out += bytes;
  if (options_.target == ActivationTarget::kHost) {
    std::memcpy(arena_.buffer(kHostPool, extent_[layer]).data(), input.data(), bytes);
    return;
  }
  const int w = next_write_;
  next_write_ = (next_write_ + 1) % static_cast<int>(write_ticket_.size());
  if (write_ticket_[w] != 0) {
    const auto start = std::chrono::steady_clock::now();
    engine_->Wait(write_ticket_[w]);
    stats_.save_wait_s += SecondsSince(start);
    write_ticket_[w] = 0;
  }
  std::byte* staging = arena_.buffer(kWritePool, w).data();
  std::memcpy(staging, input.data(), bytes);
  write_ticket_[w] = engine_->Write(extent_[layer], staging, bytes);
}

void OffloadedActivationStore::TopUp() {
  while (next_issue_ < offloaded_.size()) {
    const int64_t layer = offloaded_[next_issue_];
    if (!saved_[layer]) {
      // Not saved in this pass (a pass-pool model offloads a plan's count of its lowest layers,
      // not all the store's), or saved and already released: nothing to read back.
      ++next_issue_;
      continue;
    }
    auto free = std::find(read_busy_.begin(), read_busy_.end(), false);
    if (free == read_busy_.end()) return;
    const int b = static_cast<int>(free - read_busy_.begin());
    *free = true;
    Read r;
    r.layer = layer;
    r.buffer = b;
    r.ticket = engine_->Read(extent_[layer], arena_.buffer(kReadPool, b).data());
    reads_.push_back(r);
    ++next_issue_;
  }
}

OffloadedActivationStore::Read* OffloadedActivationStore::FindRead(int64_t layer) {
  for (Read& r : reads_)
    if (r.layer == layer) return &r;
  return nullptr;
}

void OffloadedActivationStore::Prefetch(int64_t layer) {
  CheckLayer(layer, "Prefetch");
  backward_ = true;
  if (engine_) TopUp();
}

Tensor OffloadedActivationStore::Fetch(int64_t layer) {
  CheckLayer(layer, "Fetch");
  backward_ = true;
  SM_CHECK(saved_[layer]) << "activation store: Fetch of layer " << layer
                          << ", which has no saved input in this pass (Save in Forward first)";
  const Shape shape{rows_[layer], options_.hidden};
  if (options_.layers[layer] == ActivationPlace::kRecompute) return kept_[layer];
  ++stats_.fetches;
  stats_.bytes_in += static_cast<uint64_t>(rows_[layer]) * row_bytes_;
  if (options_.target == ActivationTarget::kHost) {
    return Tensor("activation.offloaded", DType::kF32, shape,
                  arena_.buffer(kHostPool, extent_[layer]).data());
  }
  TopUp();
  Read* r = FindRead(layer);
  SM_CHECK(r != nullptr) << "activation store: Fetch of layer " << layer
                         << " out of backward's order (offloaded layers come back highest first, "
                         << "each released before the next beyond the prefetch depth)";
  if (!r->waited) {
    const auto start = std::chrono::steady_clock::now();
    engine_->Wait(r->ticket);
    stats_.fetch_wait_s += SecondsSince(start);
    r->waited = true;
  }
  return Tensor("activation.offloaded", DType::kF32, shape,
                arena_.buffer(kReadPool, r->buffer).data());
}

void OffloadedActivationStore::Release(int64_t layer) {
  CheckLayer(layer, "Release");
  saved_[layer] = false;
  kept_[layer] = Tensor();
  if (!engine_ || options_.layers[layer] != ActivationPlace::kOffload) return;
  for (size_t i = 0; i < reads_.size(); ++i) {
    if (reads_[i].layer != layer) continue;
    if (!reads_[i].waited) engine_->Wait(reads_[i].ticket);
    read_busy_[reads_[i].buffer] = false;
    reads_.erase(reads_.begin() + static_cast<std::ptrdiff_t>(i));
    break;
  }
  TopUp();
}

ActivationOffloadStats OffloadedActivationStore::TakeStats() {
  ActivationOffloadStats s = stats_;
  stats_ = {};
  return s;
}

std::string OffloadedActivationStore::Describe() const {
  int64_t recompute = 0;
  for (ActivationPlace p : options_.layers) recompute += p == ActivationPlace::kRecompute;
  std::ostringstream s;
  s << "saved inputs of " << offloaded_.size() << " of " << options_.layers.size()
    << " layers offloaded";
  if (recompute > 0) s << " (" << recompute << " more recomputed from memory)";
  if (offloaded_.empty()) return s.str();
  const size_t slot = row_bytes_ * static_cast<size_t>(options_.max_tokens);
  if (options_.target == ActivationTarget::kHost) {
    s << " to pinned host memory: " << offloaded_.size() << " slots of " << MiB(slot);
  } else {
    s << " to SSD (" << engine_->description() << "): " << write_ticket_.size() << " write and "
      << read_busy_.size() << " read buffers of " << MiB(slot) << ", prefetch depth "
      << options_.prefetch_depth;
  }
  s << ", " << MiB(arena_.bytes()) << (arena_.pinned() ? " locked" : " unlocked");
  return s.str();
}

}  // namespace seqmesh
