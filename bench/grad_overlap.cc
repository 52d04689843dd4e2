// bench/grad_overlap: how much of the gradient reduction (ZeRO-1 reduce-scatter of per-layer
// buckets) backward hides. Each rank (one thread) runs forward + backward of the same model on
// its own document, then GradSync completes the reductions and steps AdamW.
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

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "parallel/grad_sync.h"
#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi/mpi_session.h"
#include "runtime/layers.h"
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
    GradSync* sync_ptr = nullptr;
    bool hook_on = false;
    ModelOptions options;
    options.max_tokens = tokens;
    options.on_layer_grads_ready = [&](int64_t layer) {
      if (!hook_on) return;
      if (layer >= 0) {
        sync_ptr->LayerReady(static_cast<int>(1 + layer));
      } else {
        sync_ptr->LayerReady(0);
        sync_ptr->LayerReady(static_cast<int>(layers + 1));
      }
    };
    options.on_backward_progress = [&] {
      if (hook_on) sync_ptr->Progress();
    };
    Model model(config, options);
    model.InitRandom(7, 0.02f);
    GradSync sync(comm, model.params(), model.grads(), AdamWConfig{},
                  GradSync::BucketsOf(model.params().size(), 1, 9, layers),
                  GradSync::ModelStartOrder(layers, true, true));
    sync_ptr = &sync;

    std::mt19937 rng(100 + rank);
    std::vector<int32_t> tok(tokens), tgt(tokens);
    for (auto& t : tok) t = static_cast<int32_t>(rng() % config.vocab);
    for (int64_t i = 0; i + 1 < tokens; ++i) tgt[i] = tok[i + 1];
    tgt[tokens - 1] = kIgnoreIndex;
    const int32_t cu[2] = {0, static_cast<int32_t>(tokens)};
    Batch batch;
    batch.tokens = tok.data();
    batch.targets = tgt.data();
    batch.cu_seqlens = cu;
    batch.num_docs = 1;
    batch.num_tokens = tokens;

    int64_t grad_bytes = 0;
    for (const Tensor& g : model.grads()) grad_bytes += g.bytes();
    std::vector<double> fb[3], exposed[3];
    for (int r = 0; r <= reps; ++r) {  // repetition 0 warms up
      for (int mode = 0; mode < 3; ++mode) {
        model.ZeroGrad();
        hook_on = mode == 2;
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = Now();
        model.Forward(batch, static_cast<float>(n * (tokens - 1)));
        model.Backward();
        const double t1 = Now();
        if (mode > 0) sync.FinishReductions();
        const double t2 = Now();
        if (mode > 0) sync.Step(1e-5f, 1.0f);
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
          static_cast<long long>(tokens), grad_bytes / 1048576.0, sync.num_buckets(), reps);
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
