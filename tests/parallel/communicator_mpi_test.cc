// Communicator over real MPI processes (CTest runs this under mpirun with 2, 3 and 4 ranks).
// Inputs are crafted so the exact result is known (nccl-tests style): small integers, exact in
// f32 and bf16 whatever the reduction order, at odd counts. Point-to-point groups pass blocks
// around rings over ordered subsets of the world, two disjoint rings at once, double-buffered.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "tests/parallel/mpi_test_main.h"

namespace seqmesh {
namespace {

using testing::World;

// Element i of rank r's input; the sum over n ranks is Expected(n, i).
float Input(int r, int64_t i) { return static_cast<float>(r * 3 + i % 5); }
float Expected(int n, int64_t i) { return static_cast<float>(3 * n * (n - 1) / 2 + n * (i % 5)); }

// A buffer of either dtype, filled with f32 values.
struct Buffer {
  DType dtype;
  std::vector<float> f;
  std::vector<uint16_t> h;
  Buffer(DType t, int64_t n)
      : dtype(t), f(t == DType::kF32 ? n : 0), h(t == DType::kBF16 ? n : 0) {}
  void* data() { return dtype == DType::kF32 ? static_cast<void*>(f.data()) : h.data(); }
  void Set(int64_t i, float x) {
    if (dtype == DType::kF32)
      f[i] = x;
    else
      h[i] = FloatToBf16(x);
  }
  float Get(int64_t i) const { return dtype == DType::kF32 ? f[i] : Bf16ToFloat(h[i]); }
};

struct Case {
  DType dtype;
  int64_t count;
};

class CollectiveTest : public ::testing::TestWithParam<Case> {};

TEST_P(CollectiveTest, AllReduceSumsExactly) {
  Communicator& c = *World();
  const auto [dtype, count] = GetParam();
  Buffer b(dtype, count);
  for (int64_t i = 0; i < count; ++i) b.Set(i, Input(c.rank(), i));
  c.AllReduce(b.data(), count, dtype);
  for (int64_t i = 0; i < count; ++i) ASSERT_EQ(b.Get(i), Expected(c.size(), i)) << "element " << i;
}

TEST_P(CollectiveTest, ReduceScatterOutOfPlaceAndInPlace) {
  Communicator& c = *World();
  const auto [dtype, count] = GetParam();
  const int n = c.size();
  for (bool in_place : {false, true}) {
    Buffer send(dtype, count * n), recv(dtype, count);
    for (int64_t i = 0; i < count * n; ++i) send.Set(i, Input(c.rank(), i));
    void* out = in_place ? static_cast<char*>(send.data()) + c.rank() * count * DTypeSize(dtype)
                         : recv.data();
    c.ReduceScatter(send.data(), out, count, dtype);
    for (int64_t i = 0; i < count; ++i) {
      const float got = in_place ? send.Get(c.rank() * count + i) : recv.Get(i);
      ASSERT_EQ(got, Expected(n, c.rank() * count + i))
          << "element " << i << " in_place " << in_place;
    }
  }
}

TEST_P(CollectiveTest, AllGatherOutOfPlaceAndInPlace) {
  Communicator& c = *World();
  const auto [dtype, count] = GetParam();
  const int n = c.size();
  for (bool in_place : {false, true}) {
    Buffer send(dtype, count), recv(dtype, count * n);
    for (int64_t i = 0; i < count; ++i) {
      send.Set(i, Input(c.rank(), i));
      if (in_place) recv.Set(c.rank() * count + i, Input(c.rank(), i));
    }
    const void* in = in_place
                         ? static_cast<char*>(recv.data()) + c.rank() * count * DTypeSize(dtype)
                         : send.data();
    c.AllGather(in, recv.data(), count, dtype);
    for (int r = 0; r < n; ++r)
      for (int64_t i = 0; i < count; ++i)
        ASSERT_EQ(recv.Get(r * count + i), Input(r, i)) << "rank " << r << " element " << i;
  }
}

TEST_P(CollectiveTest, BroadcastFromEveryRoot) {
  Communicator& c = *World();
  const auto [dtype, count] = GetParam();
  for (int root = 0; root < c.size(); ++root) {
    Buffer b(dtype, count);
    for (int64_t i = 0; i < count; ++i) b.Set(i, Input(c.rank(), i));
    c.Broadcast(b.data(), count, dtype, root);
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(b.Get(i), Input(root, i)) << "root " << root;
  }
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(DTypeName(info.param.dtype)) + "_" + std::to_string(info.param.count);
}

INSTANTIATE_TEST_SUITE_P(DTypesAndOddCounts, CollectiveTest,
                         ::testing::Values(Case{DType::kF32, 1}, Case{DType::kF32, 7},
                                           Case{DType::kF32, 1023}, Case{DType::kF32, 100003},
                                           Case{DType::kBF16, 1}, Case{DType::kBF16, 7},
                                           Case{DType::kBF16, 1023}, Case{DType::kBF16, 100003}),
                         CaseName);

TEST(Communicator, Bf16SumRoundsEachAdditionToNearestEven) {
  Communicator& c = *World();
  // 256 + 1 is not a bf16 (8 significant bits): it rounds to even (256). With n ranks each
  // adding 1 to 256 on rank 0 the pairwise-rounded sum stays 256, whatever the order, and an
  // f32 accumulation to the end would give 256 + (n-1).
  uint16_t x = FloatToBf16(c.rank() == 0 ? 256.0f : 1.0f);
  c.AllReduce(&x, 1, DType::kBF16);
  const float f = Bf16ToFloat(x);
  // The order MPI reduces in is its own: 1+1 first is exact, so accept any result that a
  // sequence of bf16-rounded additions can give, which excludes the unrounded 256 + (n-1) for
  // n = 2 (257 is not representable).
  EXPECT_TRUE(f == 256.0f || f == 258.0f || f == 260.0f) << f;
}

TEST(Communicator, AllReduceScalarAndBarrier) {
  Communicator& c = *World();
  c.Barrier();
  EXPECT_EQ(c.AllReduceScalar(c.rank() + 0.5), c.size() * (c.size() - 1) / 2.0 + 0.5 * c.size());
  c.Barrier();
}

TEST(Communicator, RejectsUnsupportedDTypeAndBadRoot) {
  Communicator& c = *World();
  int32_t x = 0;
  EXPECT_THROW(c.AllReduce(&x, 1, DType::kI32), Error);
  float y = 0;
  EXPECT_THROW(c.Broadcast(&y, 1, DType::kF32, c.size()), Error);
}

// Passes blocks around `ring` (world ranks in ring order) with double buffering: at step t a
// member holds the block that started at position (pos - t) mod D, posts its exchange, then
// checks the block it holds (the "compute"), then completes. Non-members do nothing.
void CheckRing(Communicator& c, const std::vector<int>& ring, int64_t count, DType dtype, int tag) {
  const auto it = std::find(ring.begin(), ring.end(), c.rank());
  if (it == ring.end()) return;
  const int d = static_cast<int>(ring.size());
  const int pos = static_cast<int>(it - ring.begin());
  const int next = ring[(pos + 1) % d], prev = ring[(pos + d - 1) % d];
  Buffer block[2] = {Buffer(dtype, count), Buffer(dtype, count)};
  for (int64_t i = 0; i < count; ++i) block[0].Set(i, static_cast<float>(tag + ring[pos] + i % 3));
  for (int t = 0; t < d; ++t) {
    Buffer& cur = block[t % 2];
    Buffer& other = block[(t + 1) % 2];
    P2PGroup group;
    if (t + 1 < d) {
      const P2POp ops[] = {P2POp::Send(next, cur.data(), count, dtype),
                           P2POp::Recv(prev, other.data(), count, dtype)};
      group = c.Start(ops);
    }
    const int owner = ring[(pos - t + d) % d];
    for (int64_t i = 0; i < count; ++i)
      ASSERT_EQ(cur.Get(i), static_cast<float>(tag + owner + i % 3))
          << "ring position " << pos << " step " << t << " element " << i;
    c.Wait(group);
  }
}

TEST(PointToPoint, RingsOfEverySizeOverOrderedSubsets) {
  Communicator& c = *World();
  const int n = c.size();
  for (int d = 1; d <= n; ++d) {
    // The last d ranks, in reverse order: a ring that is neither a prefix nor sorted.
    std::vector<int> ring;
    for (int r = n - 1; r >= n - d; --r) ring.push_back(r);
    for (DType dtype : {DType::kF32, DType::kBF16}) CheckRing(c, ring, 1001, dtype, 10 * d);
    c.Barrier();
  }
}

TEST(PointToPoint, TwoDisjointRingsAtOnce) {
  Communicator& c = *World();
  const int n = c.size();
  if (n < 4) GTEST_SKIP() << "needs 4 ranks";
  // Ring A = {2, 0}, ring B = {1, 3}: each rank is in one ring, both run at the same time.
  CheckRing(c, {2, 0}, 777, DType::kF32, 100);
  CheckRing(c, {1, 3}, 777, DType::kF32, 200);
  // And rings of 3 and 1.
  CheckRing(c, {3, 1, 0}, 513, DType::kBF16, 30);  // small values: exact in bf16
  CheckRing(c, {2}, 513, DType::kBF16, 40);
  c.Barrier();
}

TEST(PointToPoint, SeveralGroupsInFlightCompleteInPostingOrder) {
  Communicator& c = *World();
  const int n = c.size();
  const int next = (c.rank() + 1) % n, prev = (c.rank() + n - 1) % n;
  constexpr int kGroups = 3;
  std::vector<float> send(kGroups), recv(kGroups, -1.0f);
  std::vector<P2PGroup> groups;
  for (int g = 0; g < kGroups; ++g) {
    send[g] = static_cast<float>(100 * g + c.rank());
    const P2POp ops[] = {P2POp::Send(next, &send[g], 1, DType::kF32),
                         P2POp::Recv(prev, &recv[g], 1, DType::kF32)};
    groups.push_back(c.Start(ops));
  }
  for (auto& g : groups) c.Wait(g);
  for (int g = 0; g < kGroups; ++g) EXPECT_EQ(recv[g], static_cast<float>(100 * g + prev));
  c.Barrier();
}

TEST(PointToPoint, TestPollsAGroupAndACollectiveToCompletion) {
  Communicator& c = *World();
  const int n = c.size();
  float send = static_cast<float>(c.rank()), recv = -1.0f;
  const P2POp ops[] = {P2POp::Send((c.rank() + 1) % n, &send, 1, DType::kF32),
                       P2POp::Recv((c.rank() + n - 1) % n, &recv, 1, DType::kF32)};
  P2PGroup g = c.Start(ops);
  std::vector<float> in(3 * n, 1.0f), out(3);
  CommWork rs = c.StartReduceScatter(in.data(), out.data(), 3, DType::kF32);
  const auto stop = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(c.Test(g) & c.Test(rs)) && std::chrono::steady_clock::now() < stop) {
  }
  EXPECT_FALSE(g.pending());
  EXPECT_FALSE(rs.pending());
  EXPECT_EQ(recv, static_cast<float>((c.rank() + n - 1) % n));
  EXPECT_EQ(out, std::vector<float>(3, static_cast<float>(n)));
  EXPECT_TRUE(c.Test(g));  // an empty handle is complete
  c.Barrier();
}

// Gradient buckets: several reduce-scatters in flight at once (each a ring of rounds with a tag
// of its own), progressed by Test in a different order on every rank and finished by Wait in
// reverse order. Each must get its own sum: a round matched with another operation's message
// would mix buckets.
TEST(Communicator, ConcurrentReduceScattersPolledInRankDependentOrder) {
  Communicator& c = *World();
  const int n = c.size();
  constexpr int kOps = 5;
  std::vector<std::vector<float>> in(kOps), out(kOps);
  std::vector<CommWork> work(kOps);
  for (int k = 0; k < kOps; ++k) {
    const int64_t count = 257 * (k + 1);
    in[k].resize(count * n);
    out[k].assign(count, -1.0f);
    for (int64_t i = 0; i < count * n; ++i) in[k][i] = Input(c.rank(), i) + 100.0f * k;
    work[k] = c.StartReduceScatter(in[k].data(), out[k].data(), count, DType::kF32);
    for (int j = 0; j <= k; ++j) c.Test(work[(j + c.rank()) % (k + 1)]);
  }
  for (int k = kOps - 1; k >= 0; --k) c.Wait(work[k]);
  for (int k = 0; k < kOps; ++k) {
    const int64_t count = 257 * (k + 1);
    for (int64_t i = 0; i < count; ++i)
      ASSERT_EQ(out[k][i], Expected(n, c.rank() * count + i) + 100.0f * k * n)
          << "operation " << k << " element " << i;
  }
  c.Barrier();
}

TEST(PointToPoint, ReceiveFromSilentPeerTimesOutNamingPeerAndStep) {
  Communicator& world = *World();
  if (world.rank() == 0) {
    // A communicator of its own, so the cancelled receive cannot disturb the others.
    MpiCommunicator c(MPI_COMM_SELF, CommOptions{std::chrono::milliseconds(200)});
    c.SetStep(42);
    float x = 0;
    const P2POp ops[] = {P2POp::Recv(0, &x, 1, DType::kF32)};
    P2PGroup g = c.Start(ops);
    const auto start = std::chrono::steady_clock::now();
    try {
      c.Wait(g);
      ADD_FAILURE() << "no timeout";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("P2PGroup (recv from 0)"), std::string::npos) << m;
      EXPECT_NE(m.find("timed out after 200 ms at step 42"), std::string::npos) << m;
      EXPECT_NE(m.find("waiting for rank(s) [0]"), std::string::npos) << m;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  }
  world.Barrier();
}

}  // namespace
}  // namespace seqmesh

int main(int argc, char** argv) {
  return seqmesh::testing::RunMpiTests(argc, argv, std::chrono::seconds(30));
}
