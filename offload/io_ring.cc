#include "offload/io_ring.h"

#include <liburing.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "runtime/check.h"

namespace seqmesh {

void IoRing::RingCloser::operator()(io_uring* ring) const {
  io_uring_queue_exit(ring);  // also unregisters the files and buffers
  delete ring;
}

IoRing::IoRing(unsigned entries, const std::vector<int>& files) {
  auto ring = std::make_unique<io_uring>();
  const int status = io_uring_queue_init(entries, ring.get(), 0);
  SM_CHECK(status == 0) << "offload: io_uring_queue_init(" << entries
                        << ") failed: " << std::strerror(-status)
                        << (status == -EPERM ? " (io_uring disabled: kernel.io_uring_disabled)"
                                             : "");
  ring_.reset(ring.release());
  const int registered =
      io_uring_register_files(ring_.get(), files.data(), static_cast<unsigned>(files.size()));
  SM_CHECK(registered == 0) << "offload: io_uring_register_files failed: "
                            << std::strerror(-registered);
}

IoRing::~IoRing() = default;
IoRing::IoRing(IoRing&&) noexcept = default;
IoRing& IoRing::operator=(IoRing&&) noexcept = default;

bool IoRing::RegisterBuffers(const std::vector<std::span<std::byte>>& buffers, std::string* why) {
  std::vector<iovec> iovecs;
  for (const std::span<std::byte>& buffer : buffers)
    iovecs.push_back({buffer.data(), buffer.size()});
  const int status =
      io_uring_register_buffers(ring_.get(), iovecs.data(), static_cast<unsigned>(iovecs.size()));
  if (status != 0) {
    *why = std::strerror(-status);
    return false;
  }
  for (size_t i = 0; i < buffers.size(); ++i)
    fixed_.push_back(
        {buffers[i].data(), buffers[i].data() + buffers[i].size(), static_cast<int>(i)});
  std::sort(fixed_.begin(), fixed_.end(),
            [](const FixedBuffer& a, const FixedBuffer& b) { return a.begin < b.begin; });
  return true;
}

int IoRing::FixedIndex(const std::byte* addr, size_t bytes) const {
  // The last buffer starting at or before addr is the only one that can hold it.
  auto after =
      std::upper_bound(fixed_.begin(), fixed_.end(), addr,
                       [](const std::byte* a, const FixedBuffer& b) { return a < b.begin; });
  if (after == fixed_.begin()) return -1;
  const FixedBuffer& buffer = *(after - 1);
  return addr + bytes <= buffer.end ? buffer.index : -1;
}

io_uring_sqe* IoRing::NextSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  SM_CHECK(sqe != nullptr) << "offload: io_uring submission queue full (internal: more "
                              "transfers in flight than the ring has entries)";
  return sqe;
}

bool IoRing::QueueRead(int file, std::byte* dst, unsigned bytes, uint64_t offset, uint64_t tag) {
  io_uring_sqe* sqe = NextSqe();
  const int index = FixedIndex(dst, bytes);
  if (index >= 0) {
    io_uring_prep_read_fixed(sqe, file, dst, bytes, offset, index);
  } else {
    io_uring_prep_read(sqe, file, dst, bytes, offset);
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, tag);
  return index >= 0;
}

bool IoRing::QueueWrite(int file, const std::byte* src, unsigned bytes, uint64_t offset,
                        uint64_t tag) {
  io_uring_sqe* sqe = NextSqe();
  const int index = FixedIndex(src, bytes);
  if (index >= 0) {
    io_uring_prep_write_fixed(sqe, file, src, bytes, offset, index);
  } else {
    io_uring_prep_write(sqe, file, src, bytes, offset);
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, tag);
  return index >= 0;
}

void IoRing::Submit() {
  int status;
  do {
    status = io_uring_submit(ring_.get());
  } while (status == -EINTR);
  SM_CHECK(status >= 0) << "offload: io_uring_submit failed: " << std::strerror(-status);
}

void IoRing::WaitCompletions(std::vector<Completion>* ready) {
  io_uring_cqe* cqe = nullptr;
  int status;
  do {
    status = io_uring_wait_cqe(ring_.get(), &cqe);
  } while (status == -EINTR);
  SM_CHECK(status == 0) << "offload: io_uring_wait_cqe failed: " << std::strerror(-status);
  ready->clear();
  unsigned head;
  io_uring_for_each_cqe(ring_.get(), head, cqe) {
    ready->push_back({io_uring_cqe_get_data64(cqe), cqe->res});
  }
  io_uring_cq_advance(ring_.get(), static_cast<unsigned>(ready->size()));
}

}  // namespace seqmesh
