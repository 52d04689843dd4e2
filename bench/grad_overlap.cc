// bench/grad_overlap: how much of the gradient reduction (ZeRO-1 reduce-scatter of per-layer
// buckets) backward hides. Each rank (one thread) runs forward + backward of the same model on
// its own document through HdpStep (the workers' step), then completes the reductions and steps
// AdamW.
//
//   OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -n 2 build/bench/grad_overlap
//       [--tokens 2048] [--layers 8] [--hidden 512] [--reps 5]
//
// Three modes, alternated per repetition so they see the same machine noise:
//   compute   forward + backward, no gradient sync (the anchor);
//   serial    backward, then every bucket's reduce-scatter started and completed;
//   overlap   each layer's bucket started from the model's grads-ready hook during backward
//             (polled at every later hook), then the rest completed.
// "exposed" is the time from the end of backward until the reductions complete; overlap
// efficiency = 1 - exposed(overlap) / exposed(serial). Times are the slowest rank's, medians.
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "parallel/hdp_step.h"
#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi/mpi_session.h"
#include "parallel/mpi_ring_link.h"
#include "runtime/model.h"

using namespace seqmesh;

namespace {

double Now() { return MPI_Wtime(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Slowest(double t) {
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  mpi::Session session(&argc, &argv);
  int64_t tokens = 2048, layers = 8, hidden = 512;
  int reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--tokens")
      tokens = std::atoll(argv[i + 1]);
    else if (a == "--layers")
      layers = std::atoll(argv[i + 1]);
    else if (a == "--hidden")
      hidden = std::atoll(argv[i + 1]);
    else if (a == "--reps")
      reps = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "grad_overlap: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  {
    MpiCommunicator comm(MPI_COMM_WORLD, CommOptions{std::chrono::minutes(5)});
    const int rank = comm.rank(), n = comm.size();
    ModelConfig config;
    config.vocab = 8192;
    config.hidden = hidden;
    config.layers = layers;
    config.heads = hidden / 64;
    config.kv_heads = std::max<int64_t>(1, config.heads / 2);
    config.ffn = hidden * 11 / 4;
    // Each rank runs one document of its own (sequence r of the plan), whole.
    MpiRingLink link(MPI_COMM_WORLD, comm.options().deadline);  // unused: no rings
    HdpStepOptions step_options;
    step_options.capacity = tokens;
    // Threads per rank: OpenMP's default (OMP_NUM_THREADS), as mpirun sets it.
    step_options.backend = MakeBackend(Device::kCpu, ExecutionContext{omp_get_max_threads()});
    HdpStep hdp(config, step_options, comm, link, AdamWConfig{});
    Model& model = hdp.model();
    model.InitRandom(7, 0.02f);
    proto::StepPlan plan;
    plan.set_num_ranks(n);
    plan.set_capacity(static_cast<uint64_t>(tokens));
    for (int r = 0; r < n; ++r) {
      proto::Sequence* seq = plan.add_sequences();
      seq->set_id(static_cast<uint64_t>(r));
      seq->set_length(static_cast<uint64_t>(tokens));
      proto::RankPlan* rp = plan.add_ranks();
      rp->set_rank(r);
      proto::MicroBatch* mb = rp->add_micro_batches();
      mb->add_ring(r);
      proto::Segment* segment = mb->add_segments();
      segment->set_sequence_id(static_cast<uint64_t>(r));
      proto::TokenRange* range = segment->add_ranges();
      range->set_begin(0);
      range->set_end(static_cast<uint64_t>(tokens));
    }
    std::mt19937 rng(100 + rank);
    std::vector<int32_t> tok(tokens);
    for (auto& t : tok) t = static_cast<int32_t>(rng() % config.vocab);
    auto read = [&](uint64_t, int64_t begin, int64_t end, std::vector<int32_t>& out) {
      out.insert(out.end(), tok.begin() + begin, tok.begin() + end);
    };
    const uint64_t targets = static_cast<uint64_t>(n * (tokens - 1));

    int64_t grad_bytes = 0;
    for (const Tensor& g : model.grads()) grad_bytes += g.bytes();
    std::vector<double> fb[3], exposed[3];
    for (int r = 0; r <= reps; ++r) {  // repetition 0 warms up
      for (int mode = 0; mode < 3; ++mode) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = Now();
        hdp.Execute(plan, targets, read,
                    mode == 2 ? HdpStep::Overlap::kDuringBackward : HdpStep::Overlap::kNone);
        const double t1 = Now();
        if (mode > 0) hdp.sync().FinishReductions();
        const double t2 = Now();
        if (mode > 0) hdp.Update(1e-5f, 1.0f);
        const double f = Slowest(t1 - t0), e = Slowest(t2 - t1);
        if (r > 0) {
          fb[mode].push_back(f);
          exposed[mode].push_back(e);
        }
      }
    }
    if (rank == 0) {
      std::printf(
          "# ranks %d, one thread each; %lld layers, hidden %lld, %lld tokens per rank; "
          "%.1f MiB of gradients in %d buckets; medians of %d\n",
          n, static_cast<long long>(layers), static_cast<long long>(hidden),
          static_cast<long long>(tokens), grad_bytes / 1048576.0, hdp.sync().num_buckets(), reps);
      const char* names[3] = {"compute", "serial", "overlap"};
      for (int m = 0; m < 3; ++m)
        std::printf("%-8s fwd+bwd %8.1f ms  exposed reduction %8.1f ms  total %8.1f ms\n", names[m],
                    Median(fb[m]) * 1e3, Median(exposed[m]) * 1e3,
                    (Median(fb[m]) + Median(exposed[m])) * 1e3);
      const double es = Median(exposed[1]), eo = Median(exposed[2]);
      std::printf(
          "overlap efficiency %.2f (1 - exposed overlap / exposed serial); backward "
          "slowdown from polling %.3fx\n",
          1.0 - eo / es, Median(fb[2]) / Median(fb[0]));
    }
  }
  return 0;
}
