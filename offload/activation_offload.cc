#include "offload/activation_offload.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iomanip>
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
  arena_ = PinnedArena({{kWritePool, slot_bytes, writes}, {kReadPool, slot_bytes, reads}},
                       options_.pin);
  engine_ = std::make_unique<SsdEngine>(options_.ssd, std::vector<size_t>(count, slot_bytes),
                                        &arena_);
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
    if (!saved_[layer]) return;  // not saved in this pass: nothing to read back
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
