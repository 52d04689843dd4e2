#include "offload/parameter_offload.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>

#include "runtime/check.h"

namespace seqmesh {
namespace {

constexpr const char* kStagingPool = "parameter staging";
constexpr int kStagingBuffers = 2;

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

OffloadedParameterStore::OffloadedParameterStore(std::vector<Tensor> params, ParamLayout layout,
                                                 ParameterOffloadOptions options)
    : params_(std::move(params)), layout_(std::move(layout)), options_(std::move(options)) {
  SM_CHECK(!layout_.groups.empty()) << "parameter offload: the layout has no groups";
  for (const ParamLayout::Group& g : layout_.groups) {
    SM_CHECK(g.first < g.last && g.last <= params_.size())
        << "parameter offload: group [" << g.first << ", " << g.last << ") of " << params_.size()
        << " parameters";
    std::byte* begin = static_cast<std::byte*>(params_[g.first].data());
    const Tensor& last = params_[g.last - 1];
    std::byte* end = static_cast<std::byte*>(last.data()) + last.bytes();
    for (size_t t = g.first; t + 1 < g.last; ++t) {
      SM_CHECK(static_cast<std::byte*>(params_[t].data()) + params_[t].bytes() <=
               static_cast<std::byte*>(params_[t + 1].data()))
          << "parameter offload: " << params_[t].name() << " and " << params_[t + 1].name()
          << " are not in arena order";
    }
    begin_.push_back(begin);
    bytes_.push_back(static_cast<size_t>(end - begin));
    largest_ = std::max(largest_, bytes_.back());
  }
  group_of_.assign(params_.size(), -1);
  for (size_t g = 0; g < layout_.groups.size(); ++g)
    for (size_t t = layout_.groups[g].first; t < layout_.groups[g].last; ++t)
      group_of_[t] = static_cast<int>(g);
  done_.assign(layout_.groups.size(), 0);
  changed_.assign(layout_.groups.size(), false);
  state_.assign(layout_.groups.size(), State::kResident);
  written_.assign(layout_.groups.size(), false);
  from_ssd_.assign(layout_.groups.size(), false);
  arena_ = PinnedArena({{kStagingPool, largest_, kStagingBuffers}}, options_.pin);
  engine_ = std::make_unique<SsdEngine>(options_.ssd, bytes_, &arena_);
  staging_.resize(kStagingBuffers);
}

OffloadedParameterStore::~OffloadedParameterStore() {
  try {
    engine_->WaitAll();
  } catch (...) {  // an I/O error with nobody left to hear it; the file goes with the engine
  }
}

void OffloadedParameterStore::Check(int group, const char* what) const {
  SM_CHECK(group >= 0 && group < num_groups())
      << "parameter store: " << what << " of group " << group << "; the model has " << num_groups()
      << " groups";
}

bool OffloadedParameterStore::resident(int group) const {
  Check(group, "resident");
  return state_[group] != State::kOffloaded;
}

size_t OffloadedParameterStore::group_bytes(int group) const {
  Check(group, "group_bytes");
  return bytes_[group];
}

std::byte* OffloadedParameterStore::group_begin(int group) const {
  Check(group, "group_begin");
  return begin_[group];
}

void OffloadedParameterStore::Settle(Staging& s) {
  if (!s.waited) {
    engine_->Wait(s.ticket);
    s.waited = true;
  }
}

int OffloadedParameterStore::FreeStaging() {
  const int b = next_staging_;
  next_staging_ = (next_staging_ + 1) % kStagingBuffers;
  Settle(staging_[b]);
  staging_[b].group = -1;
  return b;
}

int OffloadedParameterStore::StartRead(int group) {
  // A write of this group still in flight lands first (the engine does not order the two).
  for (Staging& s : staging_) {
    if (s.group == group && s.write) Settle(s);
  }
  const int b = FreeStaging();
  Staging& s = staging_[b];
  s.group = group;
  s.write = false;
  s.ticket = engine_->Read(group, arena_.buffer(kStagingPool, b).data());
  s.waited = false;
  return b;
}

void OffloadedParameterStore::Bring(int group) {
  int b = -1;
  for (int i = 0; i < kStagingBuffers; ++i) {
    if (staging_[i].group == group && !staging_[i].write) b = i;
  }
  if (b >= 0) ++stats_.prefetch_hits;
  if (b < 0) b = StartRead(group);
  const auto t0 = std::chrono::steady_clock::now();
  Settle(staging_[b]);
  stats_.acquire_wait_s += SecondsSince(t0);
  std::memcpy(begin_[group], arena_.buffer(kStagingPool, b).data(), bytes_[group]);
  staging_[b].group = -1;
  stats_.bytes_read += bytes_[group];
}

std::span<const Tensor> OffloadedParameterStore::Acquire(int group) {
  Check(group, "Acquire");
  SM_CHECK(state_[group] != State::kAcquired)
      << "parameter store: group " << group << " acquired twice without a Release";
  from_ssd_[group] = state_[group] == State::kOffloaded;
  if (from_ssd_[group]) Bring(group);
  state_[group] = State::kAcquired;
  ++stats_.acquires;
  const ParamLayout::Group& g = layout_.groups[group];
  return std::span<const Tensor>(params_).subspan(g.first, g.last - g.first);
}

void OffloadedParameterStore::Release(int group) {
  Check(group, "Release");
  SM_CHECK(state_[group] == State::kAcquired)
      << "parameter store: Release of group " << group << ", which is not acquired";
  // A group that came from SSD goes back to it (its bytes did not change); one that was resident
  // (restored, or never captured) stays resident.
  if (from_ssd_[group]) {
    ZeroAndRelease(begin_[group], bytes_[group]);
    state_[group] = State::kOffloaded;
  } else {
    state_[group] = State::kResident;
  }
}

void OffloadedParameterStore::Prefetch(int group) {
  if (group < 0 || group >= num_groups() || state_[group] != State::kOffloaded) return;
  for (const Staging& s : staging_) {
    if (s.group == group && !s.write) return;  // already on its way
  }
  StartRead(group);
}

void OffloadedParameterStore::Capture(int group) {
  Check(group, "Capture");
  SM_CHECK(state_[group] != State::kAcquired)
      << "parameter store: Capture of group " << group << " while it is acquired";
  if (state_[group] == State::kOffloaded) return;  // its bytes are on SSD and did not change
  const auto t0 = std::chrono::steady_clock::now();
  // A read of this group's old bytes in a staging buffer is stale now.
  for (Staging& s : staging_) {
    if (s.group == group && !s.write) {
      Settle(s);
      s.group = -1;
    }
  }
  const int b = FreeStaging();
  std::byte* buffer = arena_.buffer(kStagingPool, b).data();
  std::memcpy(buffer, begin_[group], bytes_[group]);
  Staging& s = staging_[b];
  s.group = group;
  s.write = true;
  s.ticket = engine_->Write(group, buffer, bytes_[group]);
  s.waited = false;
  ZeroAndRelease(begin_[group], bytes_[group]);
  state_[group] = State::kOffloaded;
  written_[group] = true;
  stats_.bytes_written += bytes_[group];
  stats_.capture_s += SecondsSince(t0);
}

void OffloadedParameterStore::CaptureAll() {
  for (int g = 0; g < num_groups(); ++g) Capture(g);
}

void OffloadedParameterStore::Restore(int group) {
  Check(group, "Restore");
  SM_CHECK(state_[group] != State::kAcquired)
      << "parameter store: Restore of group " << group << " while it is acquired";
  if (state_[group] == State::kResident) return;
  Bring(group);
  state_[group] = State::kResident;
}

void OffloadedParameterStore::Drop(int group) {
  Check(group, "Drop");
  SM_CHECK(state_[group] != State::kAcquired)
      << "parameter store: Drop of group " << group << " while it is acquired";
  if (state_[group] == State::kOffloaded) return;
  SM_CHECK(written_[group]) << "parameter store: Drop of group " << group
                            << ", which was never captured (its bytes are only in memory)";
  ZeroAndRelease(begin_[group], bytes_[group]);
  state_[group] = State::kOffloaded;
}

ParamAccess OffloadedParameterStore::Access() {
  ParamAccess a;
  a.before = [this](size_t tensor, bool overwrite) {
    SM_CHECK(tensor < group_of_.size() && group_of_[tensor] >= 0)
        << "parameter store: tensor " << tensor << " is in no group";
    const int g = group_of_[tensor];
    SM_CHECK(state_[g] != State::kAcquired)
        << "parameter store: tensor " << tensor << " swept while its group is acquired";
    if (state_[g] != State::kOffloaded) return;
    if (overwrite) {
      // Every byte will be written: the released pages (zero) need not be read back. A read of
      // the old bytes on its way is stale.
      for (Staging& s : staging_) {
        if (s.group == g && !s.write) {
          Settle(s);
          s.group = -1;
        }
      }
    } else {
      Bring(g);
    }
    state_[g] = State::kResident;
  };
  a.after = [this](size_t tensor, bool changed) {
    const int g = group_of_[tensor];
    if (changed) changed_[g] = true;
    const ParamLayout::Group& group = layout_.groups[g];
    if (++done_[g] < group.last - group.first) return;
    done_[g] = 0;
    if (changed_[g] || !written_[g])
      Capture(g);
    else
      Drop(g);
    changed_[g] = false;
  };
  return a;
}

std::string OffloadedParameterStore::Describe() const {
  size_t total = 0;
  for (size_t b : bytes_) total += b;
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  os << "parameters: " << total / 1048576.0 << " MiB in " << num_groups() << " groups on SSD ("
     << engine_->description() << "), " << kStagingBuffers << " staging buffers of "
     << largest_ / 1048576.0 << " MiB";
  return os.str();
}

ParameterOffloadStats OffloadedParameterStore::TakeStats() {
  const ParameterOffloadStats s = stats_;
  stats_ = {};
  return s;
}

}  // namespace seqmesh
