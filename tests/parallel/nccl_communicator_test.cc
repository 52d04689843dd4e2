// The NCCL backend on one process (a world of one rank): collectives are the identity and a
// point-to-point group to itself copies. Skips cleanly without a CUDA device.
#include "parallel/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <vector>

#include "parallel/mpi/mpi_communicator.h"

namespace seqmesh {
namespace {

bool HaveGpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

TEST(NcclCommunicator, SingleRankCollectivesAndSelfRing) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  MpiCommunicator boot(MPI_COMM_SELF);
  NcclCommunicator c(boot, 0, CommOptions{std::chrono::seconds(10)});
  std::vector<float> h(1001), back(1001);
  for (int i = 0; i < 1001; ++i) h[i] = static_cast<float>(i % 7);
  float *a = nullptr, *b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, h.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, h.size() * 4), cudaSuccess);
  cudaMemcpy(a, h.data(), h.size() * 4, cudaMemcpyHostToDevice);
  c.AllReduce(a, 1001, DType::kF32);
  const P2POp ops[] = {P2POp::Send(0, a, 1001, DType::kF32), P2POp::Recv(0, b, 1001, DType::kF32)};
  P2PGroup g = c.Start(ops);
  c.Wait(g);
  cudaMemcpy(back.data(), b, h.size() * 4, cudaMemcpyDeviceToHost);
  EXPECT_EQ(back, h);
  EXPECT_EQ(c.AllReduceScalar(2.5), 2.5);
  cudaFree(a);
  cudaFree(b);
}

}  // namespace
}  // namespace seqmesh

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  MPI_Finalize();
  return rc;
}
