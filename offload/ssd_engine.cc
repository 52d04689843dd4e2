// The engine's protocol, on its one I/O thread (SsdEngine::Impl::Run):
//
//   1. Admit: requests move from the queue (filled by Read/Write under the mutex) to the active
//      list in order. A request that touches an extent a running request also touches, one of
//      the two a write, waits at the head of the queue until that one finishes, so requests to
//      one extent take effect in the order they were made.
//   2. Fill the window: blocks are cut from the active requests in order into free slots (at
//      most queue_depth, each slot one block in the kernel), short transfers first.
//   3. Checksum what was submitted (writes) or has landed (reads), then finish the requests
//      whose blocks are all back and summed: a write records the extent's length and CRC32C, a
//      read checks them.
//   4. Reap: one wait for at least one completion, then every completion ready. A full block
//      frees its slot; a short one keeps it and goes back for its remainder; an error marks
//      its request, which cuts no further blocks.
//
// CRC32C is computed a block at a time, after the window has been refilled and submitted, so
// that it overlaps the blocks in flight instead of delaying them: a write's over the bytes of the
// blocks submitted so far (cut in order), a read's over the prefix of blocks landed so far (they
// may land out of order; at most queue_depth wait for the gap before them). At 12-14 GiB/s of
// CPU time (ISA-L on one Zen 3 core) it is most of the I/O thread's CPU (docs/BENCHMARKS.md).
//
// The thread sleeps only in the ring's wait. An eventfd read stays armed in the ring, so a
// Read/Write (which writes the eventfd) wakes it at once even while blocks are in flight.
//
// An extent's bytes past a multiple of 4 KiB (its tail) travel through a 4 KiB bounce page of
// the block's slot: O_DIRECT moves whole 4 KiB pages, and the caller's buffer may end earlier.
#include "offload/ssd_engine.h"

#include <isa-l/crc.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "offload/io_ring.h"
#include "offload/scratch_file.h"
#include "runtime/check.h"

namespace seqmesh {
namespace {

constexpr int kDataFile = 0;  // registered file indices
constexpr int kWakeFile = 1;
constexpr uint64_t kWakeTag = ~uint64_t{0};
constexpr size_t kMaxBlockBytes = size_t{1} << 30;  // io_uring takes an unsigned length

using Clock = std::chrono::steady_clock;

// The eventfd that wakes the I/O thread (move-only RAII).
class WakeSignal {
 public:
  WakeSignal() : fd_(eventfd(0, EFD_CLOEXEC)) {
    SM_CHECK(fd_ >= 0) << "offload: eventfd failed: " << std::strerror(errno);
  }
  ~WakeSignal() {
    if (fd_ >= 0) close(fd_);
  }
  WakeSignal(WakeSignal&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  WakeSignal& operator=(WakeSignal&&) = delete;
  int fd() const { return fd_; }
  void Raise() const {
    const uint64_t one = 1;
    ssize_t n;
    do {
      n = write(fd_, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
  }

 private:
  int fd_;
};

enum class Direction { kRead, kWrite };

struct Request {
  SsdEngine::Ticket ticket = 0;
  Direction direction = Direction::kRead;
  int extent = 0;
  std::byte* buffer = nullptr;
  size_t bytes = 0;           // the extent's recorded bytes (reads learn them at admission)
  size_t transfer = 0;        // bytes on disk: bytes rounded up to 4 KiB
  size_t cut = 0;             // bytes handed to blocks so far
  int outstanding = 0;        // blocks in the kernel or waiting for resubmission
  uint32_t recorded_crc = 0;  // reads: the extent's, from its last write
  // The CRC32C of the bytes [0, summed); a read's blocks landed past a gap (position, bytes).
  uint32_t crc = 0;
  size_t summed = 0;
  std::vector<std::pair<size_t, size_t>> landed;
  std::string error;
  bool finished() const {
    return outstanding == 0 && (!error.empty() || (cut == transfer && summed == bytes));
  }
};

// One slot of the window: a block of a request (its bytes [position, position + length)),
// `done` of them transferred.
struct Block {
  Request* request = nullptr;
  size_t position = 0;
  size_t length = 0;
  size_t done = 0;
  bool bounced = false;  // the extent's tail, through the slot's bounce page
};

struct ExtentRecord {
  bool written = false;
  size_t bytes = 0;
  uint32_t crc = 0;
};

struct ExtentUse {
  int readers = 0;
  int writers = 0;
};

struct Outcome {
  bool done = false;
  std::string error;
};

// The block's bytes of the extent (a tail block's page holds fewer).
size_t DataBytes(const Block& block) {
  return block.bounced ? block.request->bytes - block.position : block.length;
}

const char* Verb(Direction d) { return d == Direction::kRead ? "reading" : "writing"; }

}  // namespace

struct SsdEngine::Impl {
  Impl(const SsdEngineOptions& options, const std::vector<size_t>& extent_bytes,
       const PinnedArena* arena);
  ~Impl();

  // Caller side.
  Ticket Enqueue(std::unique_ptr<Request> request);
  void Wait(Ticket ticket);
  void WaitAll();
  void CheckExtent(int extent) const;
  double ThreadCpuSeconds() const;

  // I/O thread.
  void Run();
  bool Admit();  // returns whether the engine is stopping and the queue is empty
  bool CanStart(const Request& request) const;
  void Start(Request& request);
  void FillWindow();
  void CutBlock(Request& request, int slot);
  void QueueBlock(int slot);
  void Reap();
  void Complete(int slot, int result);
  void Checksum();
  void ReleaseSlot(int slot);
  bool FinishRequests();  // returns whether any finished
  void Finish(Request& request);
  void CheckCrc(Request& request);
  void FailEverything(const std::string& why);
  void SetBusy(bool busy);
  void SetActive(bool active);  // a request admitted and unfinished (its checksum included)
  std::string Where(const Request& request) const;
  std::byte* BouncePage(int slot) const { return bounce_.buffer("bounce", slot).data(); }

  const SsdEngineOptions options_;
  std::vector<size_t> extent_bytes_;
  std::vector<uint64_t> extent_offset_;
  uint64_t file_bytes_ = 0;
  ScratchFile file_;
  WakeSignal wake_;
  IoRing ring_;  // after the file: destroyed (unregistering it) before the file closes
  PinnedArena bounce_;
  std::string description_;

  // Owned by the I/O thread.
  std::vector<ExtentRecord> records_;
  std::vector<ExtentUse> uses_;
  std::list<std::unique_ptr<Request>> active_;
  std::vector<Block> slots_;
  std::vector<int> free_slots_;
  std::vector<int> resubmit_;
  std::vector<IoRing::Completion> completions_;
  uint64_t wake_value_ = 0;
  bool wake_armed_ = false;
  bool busy_window_ = false;  // a block in flight (busy_ follows it, under mu_, for stats())

  // Shared, under mu_.
  mutable std::mutex mu_;
  std::condition_variable done_;
  std::deque<std::unique_ptr<Request>> queue_;
  std::map<Ticket, Outcome> outcomes_;
  size_t unfinished_ = 0;
  Ticket next_ticket_ = 1;
  bool stopping_ = false;
  std::string fatal_;
  SsdEngineStats stats_;
  bool busy_ = false;
  Clock::time_point busy_since_;
  bool active_flag_ = false;
  Clock::time_point active_since_;
  double cpu_baseline_ = 0;

  std::thread thread_;
  clockid_t thread_clock_{};
};

namespace {

std::vector<uint64_t> ExtentOffsets(const std::vector<size_t>& extent_bytes) {
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (size_t bytes : extent_bytes) {
    offsets.push_back(offset);
    offset += AlignUp(bytes);
  }
  offsets.push_back(offset);  // the file's size
  return offsets;
}

void CheckOptions(const SsdEngineOptions& options, const std::vector<size_t>& extent_bytes) {
  SM_CHECK(options.block_bytes > 0 && options.block_bytes % kOffloadAlignment == 0 &&
           options.block_bytes <= kMaxBlockBytes)
      << "offload: offload.block_size = " << options.block_bytes
      << " must be a multiple of 4096 between 4096 and 1 GiB";
  SM_CHECK(options.queue_depth >= 1 && options.queue_depth <= 4096)
      << "offload: offload.queue_depth = " << options.queue_depth << " must be in [1, 4096]";
  SM_CHECK(!extent_bytes.empty()) << "offload: an SSD engine needs at least one extent";
  for (size_t i = 0; i < extent_bytes.size(); ++i)
    SM_CHECK(extent_bytes[i] > 0) << "offload: extent " << i << " has 0 bytes";
}

}  // namespace

SsdEngine::Impl::Impl(const SsdEngineOptions& options, const std::vector<size_t>& extent_bytes,
                      const PinnedArena* arena)
    : options_((CheckOptions(options, extent_bytes), options)),
      extent_bytes_(extent_bytes),
      extent_offset_(ExtentOffsets(extent_bytes)),
      file_bytes_(extent_offset_.back()),
      file_(options.dir, file_bytes_, options.unnamed_file),
      ring_(static_cast<unsigned>(options.queue_depth) + 1, {file_.fd(), wake_.fd()}),
      bounce_({{"bounce", kOffloadAlignment, options.queue_depth}}, /*pin=*/false),
      description_(file_.description()),
      records_(extent_bytes.size()),
      uses_(extent_bytes.size()),
      slots_(options.queue_depth) {
  extent_offset_.pop_back();
  if (arena != nullptr && arena->pinned() && arena->bytes() > 0) {
    std::string why;
    if (!ring_.RegisterBuffers(arena->all_buffers(), &why))
      description_ += ", arena buffers not registered: " + why;
  }
  for (int slot = options.queue_depth - 1; slot >= 0; --slot) free_slots_.push_back(slot);
  thread_ = std::thread([this] { Run(); });
  pthread_setname_np(thread_.native_handle(), "seqmesh-ssd-io");
  pthread_getcpuclockid(thread_.native_handle(), &thread_clock_);
}

SsdEngine::Impl::~Impl() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.Raise();
  thread_.join();  // the thread drains every request first
}

// ---- caller side ----

void SsdEngine::Impl::CheckExtent(int extent) const {
  SM_CHECK(extent >= 0 && extent < static_cast<int>(extent_bytes_.size()))
      << "offload: extent " << extent << " does not exist (the engine has " << extent_bytes_.size()
      << " extents, in " << description_ << ")";
}

SsdEngine::Ticket SsdEngine::Impl::Enqueue(std::unique_ptr<Request> request) {
  Ticket ticket;
  {
    std::lock_guard lock(mu_);
    SM_CHECK(fatal_.empty()) << fatal_;
    ticket = next_ticket_++;
    request->ticket = ticket;
    outcomes_[ticket];
    ++unfinished_;
    queue_.push_back(std::move(request));
  }
  wake_.Raise();
  return ticket;
}

void SsdEngine::Impl::Wait(Ticket ticket) {
  std::unique_lock lock(mu_);
  auto it = outcomes_.find(ticket);
  SM_CHECK(it != outcomes_.end()) << "offload: ticket " << ticket
                                  << " is not a request in flight (never issued, or already "
                                     "waited for)";
  done_.wait(lock, [&] { return it->second.done; });
  const std::string error = std::move(it->second.error);
  outcomes_.erase(it);
  SM_CHECK(error.empty()) << error;
}

void SsdEngine::Impl::WaitAll() {
  std::unique_lock lock(mu_);
  done_.wait(lock, [&] { return unfinished_ == 0; });
  std::string first;
  size_t failed = 0;
  for (auto& [ticket, outcome] : outcomes_) {
    if (outcome.error.empty()) continue;
    if (failed++ == 0) first = std::move(outcome.error);
  }
  outcomes_.clear();
  SM_CHECK(failed == 0) << first
                        << (failed > 1
                                ? " (and " + std::to_string(failed - 1) + " more requests failed)"
                                : "");
}

double SsdEngine::Impl::ThreadCpuSeconds() const {
  timespec ts{};
  if (clock_gettime(thread_clock_, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// ---- I/O thread ----

void SsdEngine::Impl::Run() {
  try {
    while (true) {
      const bool stopping = Admit();
      SetActive(!active_.empty());
      if (stopping && active_.empty()) {
        if (!wake_armed_) return;
        wake_.Raise();  // completes our own armed read, then we leave
      } else if (!wake_armed_) {
        ring_.QueueRead(kWakeFile, reinterpret_cast<std::byte*>(&wake_value_), sizeof(wake_value_),
                        0, kWakeTag);
        wake_armed_ = true;
      }
      FillWindow();
      ring_.Submit();
      Checksum();  // while the window is in flight
      // A finished request may let the queue's head start: admit it before waiting, as no
      // completion may come to end the wait.
      if (FinishRequests()) continue;
      Reap();
    }
  } catch (const std::exception& e) {
    FailEverything(e.what());
  }
}

bool SsdEngine::Impl::Admit() {
  std::vector<std::unique_ptr<Request>> admitted;
  bool stopping;
  {
    std::lock_guard lock(mu_);
    // Requests ahead in the queue are admitted before this one, so CanStart sees them too.
    while (!queue_.empty() && CanStart(*queue_.front())) {
      Request& next = *queue_.front();
      ExtentUse& use = uses_[next.extent];
      (next.direction == Direction::kRead ? use.readers : use.writers)++;
      admitted.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    stopping = stopping_ && queue_.empty();
  }
  for (auto& request : admitted) {
    Start(*request);
    active_.push_back(std::move(request));
  }
  return stopping;
}

bool SsdEngine::Impl::CanStart(const Request& request) const {
  const ExtentUse& use = uses_[request.extent];
  return use.writers == 0 && (request.direction == Direction::kRead || use.readers == 0);
}

void SsdEngine::Impl::Start(Request& request) {
  if (request.direction == Direction::kRead) {
    const ExtentRecord& record = records_[request.extent];
    if (!record.written) {
      request.error = "offload: reading extent " + std::to_string(request.extent) + " of " +
                      description_ + ": it was never written (or its last write failed)";
      return;
    }
    request.bytes = record.bytes;
    request.recorded_crc = record.crc;
    request.landed.reserve(slots_.size());
  }
  request.transfer = AlignUp(request.bytes);
}

void SsdEngine::Impl::FillWindow() {
  for (int slot : resubmit_) QueueBlock(slot);
  resubmit_.clear();
  for (auto& request : active_) {
    while (!free_slots_.empty() && request->error.empty() && request->cut < request->transfer) {
      const int slot = free_slots_.back();
      free_slots_.pop_back();
      CutBlock(*request, slot);
      QueueBlock(slot);
    }
    if (free_slots_.empty()) break;
  }
  if (!busy_window_ && free_slots_.size() < slots_.size()) {
    busy_window_ = true;
    SetBusy(true);
  }
}

// The next block of `request`: up to block_bytes of its whole 4 KiB pages, or its tail.
void SsdEngine::Impl::CutBlock(Request& request, int slot) {
  const size_t whole = request.bytes / kOffloadAlignment * kOffloadAlignment;
  Block& block = slots_[slot];
  block = Block{&request, request.cut, 0, 0, request.cut >= whole};
  if (block.bounced) {
    block.length = kOffloadAlignment;
    if (request.direction == Direction::kWrite) {
      std::byte* page = BouncePage(slot);
      const size_t tail = request.bytes - block.position;
      std::memcpy(page, request.buffer + block.position, tail);
      std::memset(page + tail, 0, kOffloadAlignment - tail);
    }
  } else {
    block.length = std::min(options_.block_bytes, whole - request.cut);
  }
  request.cut += block.length;
  ++request.outstanding;
}

void SsdEngine::Impl::QueueBlock(int slot) {
  const Block& block = slots_[slot];
  const Request& request = *block.request;
  std::byte* addr =
      (block.bounced ? BouncePage(slot) : request.buffer + block.position) + block.done;
  size_t bytes = block.length - block.done;
  if (options_.inject_short_io && bytes > kOffloadAlignment)
    bytes = AlignUp(bytes / 2);  // still whole pages, and always short of the block
  const uint64_t offset = extent_offset_[request.extent] + block.position + block.done;
  const unsigned length = static_cast<unsigned>(bytes);
  const bool fixed =
      request.direction == Direction::kRead
          ? ring_.QueueRead(kDataFile, addr, length, offset, static_cast<uint64_t>(slot))
          : ring_.QueueWrite(kDataFile, addr, length, offset, static_cast<uint64_t>(slot));
  if (fixed) {
    std::lock_guard lock(mu_);
    ++stats_.fixed_buffer_blocks;
  }
}

void SsdEngine::Impl::Reap() {
  ring_.WaitCompletions(&completions_);
  for (const IoRing::Completion& completion : completions_) {
    if (completion.tag == kWakeTag) {
      wake_armed_ = false;
      SM_CHECK(completion.result == sizeof(wake_value_))
          << "offload: the I/O thread's wake-up read failed: " << std::strerror(-completion.result);
    } else {
      Complete(static_cast<int>(completion.tag), completion.result);
    }
  }
  if (busy_window_ && free_slots_.size() == slots_.size()) {
    busy_window_ = false;
    SetBusy(false);
  }
}

void SsdEngine::Impl::Complete(int slot, int result) {
  Block& block = slots_[slot];
  Request& request = *block.request;
  if (result == -EINTR || result == -EAGAIN) {
    resubmit_.push_back(slot);
    return;
  }
  if (result <= 0) {
    if (request.error.empty()) {
      std::ostringstream os;
      os << "offload: " << Where(request) << " failed at file offset "
         << extent_offset_[request.extent] + block.position + block.done << ": "
         << (result == 0 ? (request.direction == Direction::kRead ? "read past the end of the file"
                                                                  : "the write transferred nothing")
                         : std::strerror(-result));
      request.error = os.str();
    }
    ReleaseSlot(slot);
    return;
  }
  block.done += static_cast<size_t>(result);
  if (block.done < block.length) {
    resubmit_.push_back(slot);
    std::lock_guard lock(mu_);
    ++stats_.resubmits;
    return;
  }
  if (request.direction == Direction::kRead) {
    if (block.bounced)
      std::memcpy(request.buffer + block.position, BouncePage(slot), DataBytes(block));
    request.landed.emplace_back(block.position, DataBytes(block));
  }
  ReleaseSlot(slot);
}

// Extends each request's running CRC32C: a write's over the bytes submitted so far, a read's
// over every landed block that now joins its summed prefix.
void SsdEngine::Impl::Checksum() {
  for (auto& request : active_) {
    Request& r = *request;
    if (r.direction == Direction::kWrite) {
      const size_t end = std::min(r.cut, r.bytes);
      r.crc = Crc32c(r.buffer + r.summed, end - r.summed, r.crc);
      r.summed = end;
      continue;
    }
    for (size_t i = 0; i < r.landed.size();) {
      const auto [at, length] = r.landed[i];
      if (at != r.summed) {
        ++i;
        continue;
      }
      r.crc = Crc32c(r.buffer + at, length, r.crc);
      r.summed += length;
      r.landed[i] = r.landed.back();
      r.landed.pop_back();
      i = 0;
    }
  }
}

void SsdEngine::Impl::ReleaseSlot(int slot) {
  --slots_[slot].request->outstanding;
  slots_[slot] = Block{};
  free_slots_.push_back(slot);
}

bool SsdEngine::Impl::FinishRequests() {
  bool any = false;
  for (auto it = active_.begin(); it != active_.end();) {
    if ((*it)->finished()) {
      Finish(**it);
      it = active_.erase(it);
      any = true;
    } else {
      ++it;
    }
  }
  return any;
}

void SsdEngine::Impl::Finish(Request& request) {
  const bool read = request.direction == Direction::kRead;
  if (read && request.error.empty()) CheckCrc(request);
  if (!read) {
    // A failed write leaves the extent torn: reads of it are refused until it is written again.
    records_[request.extent] = {request.error.empty(), request.bytes, request.crc};
  }
  ExtentUse& use = uses_[request.extent];
  std::lock_guard lock(mu_);
  (read ? use.readers : use.writers)--;
  if (request.error.empty()) {
    (read ? stats_.reads : stats_.writes)++;
    (read ? stats_.bytes_read : stats_.bytes_written) += request.bytes;
  }
  Outcome& outcome = outcomes_[request.ticket];
  outcome.done = true;
  outcome.error = std::move(request.error);
  --unfinished_;
  done_.notify_all();
}

void SsdEngine::Impl::CheckCrc(Request& request) {
  SM_CHECK(request.summed == request.bytes);
  const uint32_t computed = request.crc;
  if (computed == request.recorded_crc) return;
  char text[64];
  std::snprintf(text, sizeof(text), "stored 0x%08x, computed 0x%08x", request.recorded_crc,
                computed);
  request.error = "offload: extent " + std::to_string(request.extent) + " (offset " +
                  std::to_string(extent_offset_[request.extent]) + ", " +
                  std::to_string(request.bytes) + " bytes) of " + description_ +
                  " is corrupt: CRC32C " + text + "; the scratch file was changed or torn";
}

// The I/O thread cannot go on (the ring itself failed): every request fails with the reason,
// and so does every later one.
void SsdEngine::Impl::FailEverything(const std::string& why) {
  std::lock_guard lock(mu_);
  fatal_ = "offload: the SSD engine's I/O thread stopped (" + description_ + "): " + why;
  for (auto& [ticket, outcome] : outcomes_) {
    if (outcome.done) continue;
    outcome.done = true;
    outcome.error = fatal_;
  }
  unfinished_ = 0;
  queue_.clear();
  done_.notify_all();
}

void SsdEngine::Impl::SetActive(bool active) {
  if (active == active_flag_) return;
  std::lock_guard lock(mu_);
  const Clock::time_point now = Clock::now();
  if (!active) stats_.active_seconds += std::chrono::duration<double>(now - active_since_).count();
  if (active) active_since_ = now;
  active_flag_ = active;
}

// Called as the window's first block goes out and as its last comes back.
void SsdEngine::Impl::SetBusy(bool busy) {
  std::lock_guard lock(mu_);
  const Clock::time_point now = Clock::now();
  if (busy_ && !busy)
    stats_.busy_seconds += std::chrono::duration<double>(now - busy_since_).count();
  if (!busy_ && busy) busy_since_ = now;
  busy_ = busy;
}

std::string SsdEngine::Impl::Where(const Request& request) const {
  return std::string(Verb(request.direction)) + " extent " + std::to_string(request.extent) +
         " (offset " + std::to_string(extent_offset_[request.extent]) + ", " +
         std::to_string(request.bytes) + " bytes) of " + description_;
}

// ---- SsdEngine ----

SsdEngine::SsdEngine(const SsdEngineOptions& options, const std::vector<size_t>& extent_bytes,
                     const PinnedArena* arena)
    : impl_(std::make_unique<Impl>(options, extent_bytes, arena)) {}

SsdEngine::~SsdEngine() = default;

SsdEngine::Ticket SsdEngine::Write(int extent, const std::byte* src, size_t bytes) {
  impl_->CheckExtent(extent);
  SM_CHECK(bytes <= impl_->extent_bytes_[extent])
      << "offload: writing " << bytes << " bytes to extent " << extent << ", which holds "
      << impl_->extent_bytes_[extent];
  SM_CHECK(reinterpret_cast<uintptr_t>(src) % kOffloadAlignment == 0)
      << "offload: the source buffer for extent " << extent << " is not 4 KiB aligned";
  auto request = std::make_unique<Request>();
  request->direction = Direction::kWrite;
  request->extent = extent;
  request->buffer = const_cast<std::byte*>(src);  // only read from
  request->bytes = bytes;
  return impl_->Enqueue(std::move(request));
}

SsdEngine::Ticket SsdEngine::Read(int extent, std::byte* dst) {
  impl_->CheckExtent(extent);
  SM_CHECK(reinterpret_cast<uintptr_t>(dst) % kOffloadAlignment == 0)
      << "offload: the destination buffer for extent " << extent << " is not 4 KiB aligned";
  auto request = std::make_unique<Request>();
  request->direction = Direction::kRead;
  request->extent = extent;
  request->buffer = dst;
  return impl_->Enqueue(std::move(request));
}

void SsdEngine::Wait(Ticket ticket) { impl_->Wait(ticket); }
void SsdEngine::WaitAll() { impl_->WaitAll(); }

int SsdEngine::num_extents() const { return static_cast<int>(impl_->extent_bytes_.size()); }

size_t SsdEngine::extent_bytes(int extent) const {
  impl_->CheckExtent(extent);
  return impl_->extent_bytes_[extent];
}

uint64_t SsdEngine::extent_offset(int extent) const {
  impl_->CheckExtent(extent);
  return impl_->extent_offset_[extent];
}

uint64_t SsdEngine::file_bytes() const { return impl_->file_bytes_; }
const std::string& SsdEngine::description() const { return impl_->description_; }
bool SsdEngine::fixed_buffers() const { return impl_->ring_.has_fixed_buffers(); }

SsdEngineStats SsdEngine::stats() const {
  std::lock_guard lock(impl_->mu_);
  SsdEngineStats stats = impl_->stats_;
  if (impl_->busy_)
    stats.busy_seconds += std::chrono::duration<double>(Clock::now() - impl_->busy_since_).count();
  if (impl_->active_flag_)
    stats.active_seconds +=
        std::chrono::duration<double>(Clock::now() - impl_->active_since_).count();
  stats.io_thread_cpu_seconds = impl_->ThreadCpuSeconds() - impl_->cpu_baseline_;
  return stats;
}

void SsdEngine::ResetStats() {
  std::lock_guard lock(impl_->mu_);
  impl_->stats_ = SsdEngineStats{};
  impl_->busy_since_ = impl_->active_since_ = Clock::now();
  impl_->cpu_baseline_ = impl_->ThreadCpuSeconds();
}

int SsdEngine::fd_for_test() const { return impl_->file_.fd(); }

uint32_t Crc32c(const void* data, size_t bytes, uint32_t crc) {
  // crc32_iscsi neither inverts its seed nor its result; the standard CRC32C does both.
  auto* p = static_cast<unsigned char*>(const_cast<void*>(data));
  crc = ~crc;
  while (bytes > 0) {
    const size_t n = std::min(bytes, size_t{1} << 30);  // crc32_iscsi takes an int length
    crc = crc32_iscsi(p, static_cast<int>(n), crc);
    p += n;
    bytes -= n;
  }
  return ~crc;
}

}  // namespace seqmesh
