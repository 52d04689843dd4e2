// bench/ring_attention: ring attention forward + backward for one sequence split over the ranks
// of the job (run under mpirun, one thread per rank), against the same compute with no
// communication, and the bytes each rank sends.
//
//   OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -n 2
//       build/bench/ring_attention [--tokens-per-rank 8192] [--reps 3]
//
// "compute only" runs the same RingAttention with a link that moves nothing (each step computes
// on a block of the same size and the same chunk pairs), so the ratio ring / compute-only is the
// cost of communication left exposed (1.0 = fully overlapped).
#include "parallel/ring_attention.h"

#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "parallel/mpi_ring_link.h"
#include "runtime/backend.h"

using namespace seqmesh;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Counts what passes through another link.
class CountingLink : public RingLink {
 public:
  explicit CountingLink(RingLink& inner) : inner_(inner) {}
  void Post(int tag, const float* send, int64_t send_count, int to, float* recv, int64_t recv_count,
            int from) override {
    bytes_sent_ += send_count * sizeof(float);
    inner_.Post(tag, send, send_count, to, recv, recv_count, from);
  }
  void Complete(int tag) override { inner_.Complete(tag); }
  int64_t bytes_sent() const { return bytes_sent_; }

 private:
  RingLink& inner_;
  int64_t bytes_sent_ = 0;
};

class NoLink : public RingLink {
 public:
  void Post(int, const float*, int64_t, int, float*, int64_t, int) override {}
  void Complete(int) override {}
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int64_t per_rank = 8192;
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--tokens-per-rank")
      per_rank = std::atoll(argv[i + 1]);
    else if (a == "--reps")
      reps = std::atoi(argv[i + 1]);
  }
  const AttentionDims dims{12, 4, 64};
  const int64_t s = per_rank * size, qw = dims.heads * dims.head_dim,
                kw = dims.kv_heads * dims.head_dim;
  ZigzagLayout layout(s, size);
  std::vector<int> ring(size);
  for (int i = 0; i < size; ++i) ring[i] = i;
  const int64_t rows = layout.LocalTokens(rank);
  std::mt19937 rng(rank + 1);
  std::normal_distribution<float> n01;
  auto rnd = [&](int64_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = n01(rng);
    return v;
  };
  auto q = rnd(rows * qw), k = rnd(rows * kw), v = rnd(rows * kw), dout = rnd(rows * qw);
  std::vector<float> out(rows * qw), lse(dims.heads * rows), dq(rows * qw), dk(rows * kw),
      dv(rows * kw);

  // Threads per rank: OpenMP's default (OMP_NUM_THREADS), as mpirun sets it.
  const std::shared_ptr<Backend> backend =
      MakeBackend(Device::kCpu, ExecutionContext{omp_get_max_threads()});
  auto run = [&](RingLink& link) {
    RingAttention ra(dims, layout, rank, ring, link);
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
      std::fill(dq.begin(), dq.end(), 0.0f);
      std::fill(dk.begin(), dk.end(), 0.0f);
      std::fill(dv.begin(), dv.end(), 0.0f);
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = Now();
      ra.Forward(*backend, {q.data(), qw}, {k.data(), kw}, {v.data(), kw}, {out.data(), qw},
                 lse.data(), rows);
      ra.Backward(*backend, {q.data(), qw}, {k.data(), kw}, {v.data(), kw}, {out.data(), qw},
                  lse.data(), rows, {dout.data(), qw}, {dq.data(), qw}, {dk.data(), kw},
                  {dv.data(), kw});
      double t = Now() - t0;
      // The step ends when the slowest rank ends.
      MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      times.push_back(t);
    }
    return Median(times);
  };
  MpiRingLink mpi(MPI_COMM_WORLD, std::chrono::milliseconds(600000));
  CountingLink counting(mpi);
  NoLink none;
  const double compute_only = run(none);
  const double ring_time = run(counting);
  const double flops = 12.0 * dims.heads * dims.head_dim * (s * (s + 1.0) / 2);
  if (rank == 0) {
    std::printf(
        "ranks: %d  threads_per_rank: %d  tokens: %ld (%ld per rank)  heads %d/%d "
        "head_dim %d\n",
        size, backend->context().threads, static_cast<long>(s), static_cast<long>(per_rank),
        dims.heads, dims.kv_heads, dims.head_dim);
    std::printf("compute_only_s: %.3f\nring_s: %.3f\nring_over_compute_only: %.3f\n", compute_only,
                ring_time, ring_time / compute_only);
    std::printf("gflops_per_rank: %.1f\n", flops / size / ring_time / 1e9);
    std::printf("bytes_sent_per_rank_per_step: %.1f MiB\n",
                counting.bytes_sent() / static_cast<double>(reps) / (1 << 20));
  }
  MPI_Finalize();
  return 0;
}
