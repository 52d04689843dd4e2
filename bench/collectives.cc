// Collectives of seqmesh's MPI Communicator against MPI's own blocking calls made directly in
// the same run (DESIGN.md section 6): all-reduce vs MPI_Allreduce, reduce-scatter vs
// MPI_Reduce_scatter_block, all-gather vs MPI_Allgather, f32, 1 KiB to 256 MiB.
//
//   mpirun -n 4 bench_collectives [max_bytes]
//
// Size S is the whole buffer (nccl-tests): the all-reduce buffer, the reduce-scatter input, the
// all-gather output. algBW = S / t; busBW = algBW * 2(n-1)/n (all-reduce), (n-1)/n (the others),
// so figures for different rank counts compare. t is the slowest rank's mean over the
// iterations; ours and MPI's alternate per iteration so both see the same machine noise.
// One line per size and collective, with ratio = our busBW / MPI's.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi/mpi_session.h"

namespace {

using seqmesh::DType;
using seqmesh::MpiCommunicator;

double Now() { return MPI_Wtime(); }

double SlowestMean(double total, int iters) {
  double mean = total / iters;
  MPI_Allreduce(MPI_IN_PLACE, &mean, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return mean;
}

}  // namespace

int main(int argc, char** argv) {
  seqmesh::mpi::Session session(&argc, &argv);  // also picks libnbc's all-reduce algorithm
  const int64_t max_bytes = argc > 1 ? std::atoll(argv[1]) : (int64_t{256} << 20);
  {
    MpiCommunicator comm(MPI_COMM_WORLD, seqmesh::CommOptions{std::chrono::minutes(5)});
    const int n = comm.size(), rank = comm.rank();
    std::vector<float> a(max_bytes / 4, 1.0f), b(max_bytes / 4, 0.0f);
    if (rank == 0)
      std::printf(
          "# ranks %d; size = whole buffer; GB/s = 1e9 B/s; ratio = ours/MPI busBW\n"
          "%-15s %11s %10s %10s %10s %10s %7s\n",
          n, "collective", "bytes", "ours_alg", "ours_bus", "mpi_alg", "mpi_bus", "ratio");
    for (int64_t bytes = 1024; bytes <= max_bytes; bytes *= 4) {
      const int64_t count = bytes / 4;
      const int64_t block = count / n;  // reduce-scatter output / all-gather input
      const int iters = static_cast<int>(std::clamp<int64_t>((int64_t{128} << 20) / bytes, 3, 200));
      for (int which = 0; which < 3; ++which) {
        const char* name = which == 0 ? "all_reduce" : which == 1 ? "reduce_scatter" : "all_gather";
        const double bus_factor = which == 0 ? 2.0 * (n - 1) / n : static_cast<double>(n - 1) / n;
        auto ours = [&] {
          if (which == 0)
            comm.AllReduce(a.data(), count, DType::kF32);
          else if (which == 1)
            comm.ReduceScatter(a.data(), b.data(), block, DType::kF32);
          else
            comm.AllGather(a.data(), b.data(), block, DType::kF32);
        };
        auto theirs = [&] {
          if (which == 0)
            MPI_Allreduce(MPI_IN_PLACE, a.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD);
          else if (which == 1)
            MPI_Reduce_scatter_block(a.data(), b.data(), static_cast<int>(block), MPI_FLOAT,
                                     MPI_SUM, MPI_COMM_WORLD);
          else
            MPI_Allgather(a.data(), static_cast<int>(block), MPI_FLOAT, b.data(),
                          static_cast<int>(block), MPI_FLOAT, MPI_COMM_WORLD);
        };
        ours();  // warm-up (connections, pages)
        theirs();
        double t_ours = 0, t_mpi = 0;
        for (int i = 0; i < iters; ++i) {
          MPI_Barrier(MPI_COMM_WORLD);
          double t0 = Now();
          ours();
          t_ours += Now() - t0;
          MPI_Barrier(MPI_COMM_WORLD);
          t0 = Now();
          theirs();
          t_mpi += Now() - t0;
        }
        t_ours = SlowestMean(t_ours, iters);
        t_mpi = SlowestMean(t_mpi, iters);
        const double sized = static_cast<double>(which == 0 ? count : block * n) * 4;
        const double alg_ours = sized / t_ours / 1e9, alg_mpi = sized / t_mpi / 1e9;
        if (rank == 0)
          std::printf("%-15s %11lld %10.3f %10.3f %10.3f %10.3f %7.2f\n", name,
                      static_cast<long long>(bytes), alg_ours, alg_ours * bus_factor, alg_mpi,
                      alg_mpi * bus_factor, alg_ours / alg_mpi);
        // Keep values finite and small across repeated in-place sums.
        std::fill(a.begin(), a.begin() + count, 1.0f);
      }
    }
  }
  return 0;
}
