// The NCCL backend on one process (a world of one rank): collectives are the identity, a
// point-to-point group to itself copies, non-blocking work completes through Test, and a receive
// that no send matches fails by the deadline with a named error instead of hanging. Skips
// cleanly without a CUDA device.
//
// One GPU holds one rank of an NCCL communicator (NCCL refuses two ranks on one device), so the
// multi-rank paths need a machine with several GPUs; docs/PARALLEL.md says what has run where.
// The bootstrap here is a world of one in this process, so the test needs no MPI runtime and
// runs on a GPU machine that has only CUDA and NCCL.
#include "parallel/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "parallel/world_of_one.h"

namespace seqmesh {
namespace {

bool HaveGpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Device buffer of n floats (or 2n bf16), freed at scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) { SM_CHECK_CUDA(cudaMalloc(&p_, bytes)); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

template <typename T>
void ToDevice(const std::vector<T>& h, void* d) {
  ASSERT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
}
template <typename T>
std::vector<T> ToHost(const void* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

TEST(NcclCommunicator, SingleRankCollectivesAreTheIdentity) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  WorldOfOne boot;
  NcclCommunicator c(boot, 0, CommOptions{std::chrono::seconds(10)});
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  EXPECT_STREQ(c.backend(), "nccl");

  const size_t n = 1001;
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>(i % 7) - 3.25f;
  DeviceBuffer a(n * 4), b(n * 4);
  ToDevice(h, a.as<void>());
  c.AllReduce(a.as<void>(), n, DType::kF32);
  EXPECT_EQ(ToHost<float>(a.as<void>(), n), h);
  c.ReduceScatter(a.as<void>(), b.as<void>(), n, DType::kF32);
  EXPECT_EQ(ToHost<float>(b.as<void>(), n), h);
  c.AllGather(a.as<void>(), a.as<void>(), n, DType::kF32);  // in place
  EXPECT_EQ(ToHost<float>(a.as<void>(), n), h);
  c.Broadcast(a.as<void>(), n, DType::kF32, 0);
  EXPECT_EQ(ToHost<float>(a.as<void>(), n), h);
  c.Barrier();
  EXPECT_EQ(c.AllReduceScalar(2.5), 2.5);
  EXPECT_EQ(c.AllReduceScalar(-1e300), -1e300);  // f64 on the device, not f32

  // bf16: bit patterns survive the sum over one rank.
  std::vector<uint16_t> hb(n);
  for (size_t i = 0; i < n; ++i) hb[i] = FloatToBf16(h[i]);
  ToDevice(hb, b.as<void>());
  c.AllReduce(b.as<void>(), n, DType::kBF16);
  EXPECT_EQ(ToHost<uint16_t>(b.as<void>(), n), hb);
}

TEST(NcclCommunicator, SelfRingAndNonBlockingWork) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  WorldOfOne boot;
  NcclCommunicator c(boot, 0, CommOptions{std::chrono::seconds(10)});
  const size_t n = 1 << 20;  // 4 MiB: large enough that Test sees the work in flight or done
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>(i % 1013);
  DeviceBuffer block0(n * 4), block1(n * 4), out(n * 4);
  ToDevice(h, block0.as<void>());

  // Double-buffered ring exchange, as ring attention runs it: three hops to itself.
  void* blocks[2] = {block0.as<void>(), block1.as<void>()};
  ASSERT_EQ(cudaMemset(blocks[1], 0, n * 4), cudaSuccess);
  int cur = 0;
  for (int hop = 0; hop < 3; ++hop) {
    const P2POp ops[] = {P2POp::Send(0, blocks[cur], n, DType::kF32),
                         P2POp::Recv(0, blocks[1 - cur], n, DType::kF32)};
    P2PGroup g = c.Start(ops);
    EXPECT_TRUE(g.pending());
    c.Wait(g);
    EXPECT_FALSE(g.pending());
    cur = 1 - cur;
  }
  EXPECT_EQ(ToHost<float>(blocks[cur], n), h);

  // Non-blocking reduce-scatter and all-gather complete through Test alone.
  CommWork rs = c.StartReduceScatter(blocks[cur], out.as<void>(), n, DType::kF32);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!c.Test(rs)) ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "Test never done";
  EXPECT_FALSE(rs.pending());
  EXPECT_EQ(ToHost<float>(out.as<void>(), n), h);
  ASSERT_EQ(cudaMemset(out.as<void>(), 0, n * 4), cudaSuccess);
  CommWork ag = c.StartAllGather(blocks[cur], out.as<void>(), n, DType::kF32);
  c.Wait(ag);
  EXPECT_EQ(ToHost<float>(out.as<void>(), n), h);
}

TEST(NcclCommunicator, BadArgumentsAreNamed) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  WorldOfOne boot;
  NcclCommunicator c(boot, 0, CommOptions{std::chrono::seconds(10)});
  DeviceBuffer a(64);
  try {
    c.AllReduce(a.as<void>(), 4, DType::kI32);
    FAIL() << "i32 all-reduce was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("i32"), std::string::npos) << e.what();
  }
  try {
    const P2POp ops[] = {P2POp::Send(1, a.as<void>(), 4, DType::kF32)};
    c.Start(ops);
    FAIL() << "a send to rank 1 of a world of 1 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("peer 1"), std::string::npos) << e.what();
  }
  try {
    c.Broadcast(a.as<void>(), 4, DType::kF32, 3);
    FAIL() << "root 3 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("root 3"), std::string::npos) << e.what();
  }
}

// A receive that no send matches: NCCL refuses the group at ncclGroupEnd (2.28 on an H100 did),
// or, were it enqueued, the wait would run into the deadline. Either way the caller gets a named
// error, not a hang.
TEST(NcclCommunicator, UnmatchedReceiveIsAnError) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  WorldOfOne boot;
  NcclCommunicator c(boot, 0, CommOptions{std::chrono::milliseconds(1500)});
  c.SetStep(42);
  DeviceBuffer a(4096);
  const auto t0 = std::chrono::steady_clock::now();
  std::string message;
  try {
    const P2POp ops[] = {P2POp::Recv(0, a.as<void>(), 1024, DType::kF32)};
    P2PGroup g = c.Start(ops);
    c.Wait(g);
  } catch (const Error& e) {
    message = e.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(message.empty()) << "an unmatched receive completed";
  std::printf("unmatched receive: error after %.2f s: %s\n", s, message.c_str());
  EXPECT_LT(s, 30.0);
  const bool refused = message.find("NCCL") != std::string::npos;
  const bool timed_out = message.find("timed out") != std::string::npos &&
                         message.find("step 42") != std::string::npos &&
                         message.find("recv from 0") != std::string::npos;
  EXPECT_TRUE(refused || timed_out) << message;
}

// The deadline path: the communicator's stream is held by a host function that sleeps past the
// deadline, so the all-reduce behind it cannot finish in time. Wait gives up at the deadline,
// aborts the NCCL communicator and names the operation and the step. ncclCommAbort frees device
// memory, which waits for the device's queued work, so the error arrives when the 4 s stall ends
// (2.28 on an H100: 4.01 s); a stalled NCCL kernel instead sees the abort flag and exits.
TEST(NcclCommunicator, StalledStreamFailsByTheDeadline) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  WorldOfOne boot;
  NcclCommunicator c(boot, 0, CommOptions{std::chrono::milliseconds(1500)});
  c.SetStep(42);
  DeviceBuffer a(4096);
  ASSERT_EQ(
      cudaLaunchHostFunc(
          c.stream(), [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(4000)); },
          nullptr),
      cudaSuccess);
  const auto t0 = std::chrono::steady_clock::now();
  std::string message;
  try {
    c.AllReduce(a.as<void>(), 1024, DType::kF32);
  } catch (const Error& e) {
    message = e.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("stalled stream: error after %.2f s: %s\n", s, message.c_str());
  ASSERT_FALSE(message.empty()) << "the all-reduce finished behind a 4 s stall";
  EXPECT_NE(message.find("AllReduce timed out after 1500 ms at step 42"), std::string::npos)
      << message;
  EXPECT_GE(s, 1.4);   // not before the deadline
  EXPECT_LT(s, 15.0);  // nor long after the stall ended
  // Poisoned: the next operation fails with an error too, and does not hang.
  EXPECT_THROW(c.AllReduce(a.as<void>(), 1024, DType::kF32), Error);
}

}  // namespace
}  // namespace seqmesh
