// Collectives of seqmesh's MPI Communicator against MPI's own blocking calls made directly in
// the same run (DESIGN.md section 6): all-reduce vs MPI_Allreduce, reduce-scatter vs
// MPI_Reduce_scatter_block, all-gather vs MPI_Allgather, f32, 1 KiB to 256 MiB.
//
//   mpirun -n 4 bench_collectives [max_bytes]
//
// Size S is the whole buffer (nccl-tests): the all-reduce buffer, the reduce-scatter input, the
// all-gather output. algBW = S / t; busBW = algBW * 2(n-1)/n (all-reduce), (n-1)/n (the others),
// so figures for different rank counts compare. t is the median over the iterations of the
// slowest rank's time in that iteration (a mean let one descheduled iteration of a rank sharing
// its core decide a point: single runs of one point spread 0.57-1.35x); the mean is printed too.
// Ours and MPI's alternate per iteration so both see the same machine noise, and which goes
// first alternates too. One line per size
// and collective, with ratio = our busBW / MPI's (medians).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi/mpi_session.h"

namespace {

using seqmesh::DType;
using seqmesh::MpiCommunicator;

double Now() { return MPI_Wtime(); }

// Per iteration, the slowest rank's time; returns {median, mean} over the iterations.
std::pair<double, double> SlowestPerIteration(std::vector<double> times) {
  MPI_Allreduce(MPI_IN_PLACE, times.data(), static_cast<int>(times.size()), MPI_DOUBLE, MPI_MAX,
                MPI_COMM_WORLD);
  double mean = 0;
  for (double t : times) mean += t / static_cast<double>(times.size());
  std::sort(times.begin(), times.end());
  const size_t n = times.size();
  const double median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  return {median, mean};
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
          "# *_alg, *_bus: medians; ratio = ours/MPI busBW of the medians, mean_ratio of the "
          "means\n"
          "%-15s %11s %10s %10s %10s %10s %7s %10s\n",
          n, "collective", "bytes", "ours_alg", "ours_bus", "mpi_alg", "mpi_bus", "ratio",
          "mean_ratio");
    for (int64_t bytes = 1024; bytes <= max_bytes; bytes *= 4) {
      const int64_t count = bytes / 4;
      const int64_t block = count / n;  // reduce-scatter output / all-gather input
      const int iters = static_cast<int>(std::clamp<int64_t>((int64_t{1} << 30) / bytes, 16, 200));
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
        std::vector<double> t_ours(iters), t_mpi(iters);
        auto timed = [](auto&& call) {
          MPI_Barrier(MPI_COMM_WORLD);
          const double t0 = Now();
          call();
          return Now() - t0;
        };
        for (int i = 0; i < iters; ++i) {
          // Which of the two runs first alternates: the second one of a pair ran up to 1.5x
          // faster (all-gather, 2 ranks, 64 MiB) whichever it was.
          if (i % 2 == 0) {
            t_ours[i] = timed(ours);
            t_mpi[i] = timed(theirs);
          } else {
            t_mpi[i] = timed(theirs);
            t_ours[i] = timed(ours);
          }
        }
        const auto [med_ours, mean_ours] = SlowestPerIteration(t_ours);
        const auto [med_mpi, mean_mpi] = SlowestPerIteration(t_mpi);
        const double sized = static_cast<double>(which == 0 ? count : block * n) * 4;
        const double alg_ours = sized / med_ours / 1e9, alg_mpi = sized / med_mpi / 1e9;
        if (rank == 0)
          std::printf("%-15s %11lld %10.3f %10.3f %10.3f %10.3f %7.2f %10.2f\n", name,
                      static_cast<long long>(bytes), alg_ours, alg_ours * bus_factor, alg_mpi,
                      alg_mpi * bus_factor, alg_ours / alg_mpi, mean_mpi / mean_ours);
        // Keep values finite and small across repeated in-place sums.
        std::fill(a.begin(), a.begin() + count, 1.0f);
      }
    }
  }
  return 0;
}
