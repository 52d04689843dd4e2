// `seqmesh worker`: one rank of an HDP training job (DESIGN.md section 3; docs/COORDINATOR.md).
// Started under MPI (the world communicator), normally by `seqmesh launch`:
//
//   seqmesh worker --coordinator HOST:PORT [--token-file F] [--tls-root F
//                  [--tls-cert F --tls-key F]]
//
// It registers with the coordinator (which sends the resolved config), loads the committed
// checkpoint it names, then per step: fetches the plan, reads its own tokens from the dataset
// files, runs its micro-batches (local varlen items and ring items), reduces gradients over all
// ranks (ZeRO-1: each layer's bucket starts reducing while backward continues), reports
// metrics, and at checkpoint steps writes its part and commits it. A heartbeat thread keeps the
// coordinator informed; when the coordinator says the job is failing, or stops answering, the
// worker exits at once (the process is the unit of recovery) and the launcher restarts the job.
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "launch/activation_offload_setup.h"
#include "launch/command.h"
#include "launch/coordinator.h"
#include "launch/coordinator_client.h"
#include "launch/dist_checkpoint.h"
#include "launch/flags.h"
#include "launch/metrics_file.h"
#include "launch/optimizer_offload.h"
#include "launch/run_trace.h"
#include "launch/training_data.h"
#include "launch/validation.h"
#include "launch/worker.h"
#include "parallel/hdp_step.h"
#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi/mpi_handles.h"
#include "parallel/mpi/mpi_session.h"
#include "parallel/mpi_ring_link.h"
#include "runtime/batch_sampler.h"
#include "runtime/check.h"
#include "runtime/checkpoint.h"
#include "runtime/files.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/indexed_dataset.h"
#include "runtime/run_config.h"
#include "runtime/trace.h"

namespace seqmesh::launch {
namespace {

// Exits the process now: a worker that cannot go on must not wait in MPI_Finalize for peers
// that may be blocked; mpirun sees the exit status and the launcher restarts the job.
[[noreturn]] void Die(int rank, const std::string& why) {
  std::fprintf(stderr, "worker rank %d: %s\n", rank, why.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(1);
}

double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Flags into WorkerArgs; false when the help was printed.
bool ParseArgs(const Args& args, WorkerArgs& w) {
  std::string token_file;
  FlagParser flags("worker", "one rank of a training job (started under MPI by seqmesh launch)",
                   "mpirun -n 4 seqmesh worker --coordinator 127.0.0.1:5555 --token-file token");
  flags
      .String("--coordinator", "HOST:PORT", &w.coordinator, "the job's coordinator", Required::kYes)
      .String("--token-file", "F", &token_file, "the job token (else SEQMESH_JOB_TOKEN)")
      .String("--tls-root", "F", &w.tls_root,
              "PEM of the coordinator's certificate: talk TLS (else plaintext)")
      .String("--tls-cert", "F", &w.tls_cert, "mutual TLS: this worker's certificate (PEM)")
      .String("--tls-key", "F", &w.tls_key, "mutual TLS: this worker's key (PEM)");
  if (!flags.Parse(args)) return false;
  w.token = ReadJobToken(token_file);
  return true;
}

// Heartbeats from their own thread from construction to destruction: every
// heartbeat_timeout_s / 5, with the step the rank is at. The coordinator's abort, or no answer
// for a whole timeout, ends the process (Die).
class HeartbeatThread {
 public:
  HeartbeatThread(CoordinatorClient& client, int rank, uint64_t generation, uint64_t step,
                  double timeout_s)
      : step_(step) {
    thread_ = std::thread([this, &client, rank, generation, timeout_s] {
      const auto period = std::chrono::milliseconds(
          std::max<int64_t>(50, static_cast<int64_t>(timeout_s * 1000 / 5)));
      int failures = 0;
      while (!finished_.load()) {
        proto::HeartbeatRequest hb;
        hb.set_rank(rank);
        hb.set_step(step_.load());
        hb.set_generation(generation);
        try {
          const proto::HeartbeatReply r = client.Heartbeat(hb);
          failures = 0;
          if (r.abort()) Die(rank, "the coordinator stops the job: " + r.reason());
        } catch (const Error& e) {
          // The coordinator is gone (or unreachable) for longer than a heartbeat timeout.
          if (++failures * period.count() >= timeout_s * 1000)
            Die(rank, std::string("lost the coordinator: ") + e.what());
        }
        for (int i = 0; i < 10 && !finished_.load(); ++i) std::this_thread::sleep_for(period / 10);
      }
    });
  }
  ~HeartbeatThread() {
    finished_.store(true);
    thread_.join();
  }
  void SetStep(uint64_t step) { step_.store(step); }

 private:
  std::atomic<uint64_t> step_;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

// Reads the tokens of the plan's sequence `seq` from the dataset the batch entry names, after
// checking that it is the sequence the coordinator planned.
void ReadPlannedTokens(const proto::PlanReply& reply, const std::vector<IndexedDataset>& datasets,
                       uint64_t seq, int64_t begin, int64_t end, std::vector<int32_t>& out) {
  const uint64_t step = reply.plan().step();
  const proto::BatchSequence& b = reply.batch(static_cast<int>(seq));
  SM_CHECK(b.dataset() < datasets.size())
      << "step " << step << ": batch entry " << seq << " names dataset " << b.dataset() << " of "
      << datasets.size();
  const IndexedDataset& ds = datasets[b.dataset()];
  SM_CHECK(b.sequence() < static_cast<uint64_t>(ds.num_sequences()) &&
           static_cast<uint64_t>(ds.Length(b.sequence())) == b.length())
      << "step " << step << ": sequence " << b.sequence() << " of dataset " << b.dataset()
      << " does not have the planned length " << b.length()
      << " (the coordinator and this worker read different data?)";
  ds.ReadRange(b.sequence(), begin, end - begin, out);
}

// SEQMESH_TRACE=DIR: each rank writes DIR/rank<R>.jsonl, a line per step with its phases and
// every forward + backward pass against the plan's estimate (bench/hdp_e2e.sh reads it).
using TraceFile = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;
TraceFile OpenTrace(int rank) {
  TraceFile trace(nullptr, &std::fclose);
  if (const char* dir = std::getenv("SEQMESH_TRACE"); dir && *dir) {
    const std::string path = std::string(dir) + "/rank" + std::to_string(rank) + ".jsonl";
    trace.reset(std::fopen(path.c_str(), "w"));
    SM_CHECK(trace) << "SEQMESH_TRACE: cannot write " << path;
  }
  return trace;
}

struct StepTimes {
  double fetch_ms = 0, step_ms = 0, ring_wait_ms = 0;
};

void WriteTrace(std::FILE* trace, int rank, const proto::StepPlan& plan, const StepResult& r,
                const StepTimes& t) {
  std::fprintf(trace,
               "{\"step\":%llu,\"rank\":%d,\"fetch_ms\":%.3f,\"compute_ms\":%.3f,"
               "\"step_ms\":%.3f,\"estimated_step_ms\":%.3f,\"ring_wait_ms\":%.3f,\"passes\":[",
               static_cast<unsigned long long>(plan.step()), rank, t.fetch_ms, r.compute_ms,
               t.step_ms, plan.estimated_step_ms(), t.ring_wait_ms);
  const proto::RankPlan& mine = plan.ranks(rank);
  for (size_t i = 0; i < r.passes.size(); ++i) {
    const PassTiming& p = r.passes[i];
    const proto::MicroBatch& mb = mine.micro_batches(p.micro_batch);
    // [micro-batch, segment, ring size, tokens, start, end, estimated start, duration]
    std::fprintf(trace, "%s[%d,%d,%d,%lld,%.3f,%.3f,%.3f,%.3f]", i ? "," : "", p.micro_batch,
                 p.segment, p.ring_size, static_cast<long long>(p.tokens), p.start_ms, p.end_ms,
                 mb.estimated_start_ms(), mb.estimated_duration_ms());
  }
  std::fprintf(trace, "]}\n");
  std::fflush(trace);
}

proto::MetricsReport MetricsOf(int rank, uint64_t step, uint64_t generation,
                               const HdpStepResult& done, float lr, const StepTimes& t,
                               int64_t sync_bytes) {
  const StepResult& r = done.run;
  proto::MetricsReport m;
  m.set_rank(rank);
  m.set_step(step);
  m.set_generation(generation);
  m.set_loss(r.loss);
  m.set_tokens(r.tokens);
  m.set_grad_norm(done.grad_norm);
  m.set_lr(lr);
  m.set_step_ms(t.step_ms);
  m.set_compute_ms(r.compute_ms);
  m.set_bytes_sent(r.ring_bytes_sent + sync_bytes);
  m.set_micro_batches(r.micro_batches);
  // Per micro-batch: its first pass's start to its last pass's end (the coordinator's refit).
  std::map<int, proto::MicroBatchTiming*> timing;
  for (const PassTiming& p : r.passes) {
    auto [it, fresh] = timing.try_emplace(p.micro_batch, nullptr);
    if (fresh) {
      it->second = m.add_micro_batch_times();
      it->second->set_micro_batch(static_cast<uint32_t>(p.micro_batch));
      it->second->set_start_ms(p.start_ms);
    }
    it->second->set_end_ms(std::max(it->second->end_ms(), p.end_ms));
  }
  return m;
}

// Writes this rank's part of the checkpoint after `steps` steps and reports its files.
void CommitPart(CoordinatorClient& client, const RunConfig& config, HdpStep& hdp, int world,
                uint64_t generation, uint64_t steps) {
  const std::string dir = CheckpointStepDir(config, steps);
  proto::CheckpointPart part;
  part.set_rank(hdp.rank());
  part.set_step(steps);
  part.set_generation(generation);
  for (proto::FileDigest& d :
       DigestFiles(dir, WriteCheckpointPart(dir, hdp.rank(), world, hdp.model(), hdp.sync(),
                                            config.checkpoint.export_dtype)))
    *part.add_files() = std::move(d);
  client.CommitCheckpoint(part);
}

// The steps from the job's start step to its end, each: fetch the plan, run it, report,
// checkpoint when the plan says so.
void TrainSteps(CoordinatorClient& client, const proto::RegisterReply& job, const RunConfig& config,
                MpiCommunicator& comm, HeartbeatThread& heartbeat) {
  const int rank = comm.rank(), world = comm.size();
  const uint64_t generation = job.generation();
  // Ring exchanges get a communicator of their own, so their tags never meet the collectives'.
  mpi::Comm ring_comm(MPI_COMM_WORLD);
  MpiRingLink link(ring_comm.get(), comm.options().deadline);
  // The datasets as every process opens them; the held-out sequences for validation.
  const TrainingData data = OpenTrainingData(config);
  const std::vector<IndexedDataset>& datasets = data.datasets;
  const ValidationSet validation = ChooseValidationSet(data);
  const scheduler::CostModel cost = scheduler::PlannerCostModel(config);  // validation's plans
  HdpStepOptions step_options;
  step_options.capacity = config.training.micro_batch_tokens;
  const int64_t max_tokens = ActivationRowsFor(config);
  const ActivationSetup acts =
      PlanActivationSetup(config, max_tokens, cost, mpi::LocalRanks(), rank);
  step_options.checkpoint_layers = acts.checkpoint_layers;
  step_options.offload_layers = acts.offload_layers;
  step_options.plan_offload = acts.plan_offload;
  const DeviceChoice device = ChooseComputeDevice(config.training.device);
  if (!device.note.empty() && rank == 0) std::cerr << device.note << std::endl;
  step_options.backend =
      MakeBackend(device.device, ExecutionContext{static_cast<int>(config.training.threads)});
  step_options.precision = config.training.precision;
  step_options.lora = config.lora;
  step_options.lora_seed = static_cast<uint64_t>(config.training.seed);
  OptimizerOffload offload(config.offload, rank);
  step_options.optimizer_state = offload.Factory();
  ActivationOffload activations(config, acts, max_tokens);  // outlives hdp's model
  std::optional<OffloadedParameterStore> param_store;       // the same
  HdpStep hdp(config.model, step_options, comm, link, config.adamw());
  if (activations.store()) hdp.model().UseActivationStore(activations.store());
  const std::string params = UseParameterOffload(config.offload, hdp, offload, param_store);
  if (offload.enabled() && rank == 0) std::cerr << "offload: " << offload.Describe() << std::endl;
  if (!params.empty() && rank == 0) std::cerr << "offload: " << params << std::endl;
  if (!acts.note.empty()) std::cerr << acts.note << std::endl;
  if (activations.store() && rank == 0)
    std::cerr << "activations: " << activations.Describe() << std::endl;
  if (config.training.precision == Precision::kBf16 && rank == 0)
    std::cerr << "precision: bf16 matrix multiplications with fp32 accumulation and master "
              << "weights (" << DescribeBf16Matmul(Device::kCpu) << ")" << std::endl;
  hdp.model().InitRandom(static_cast<uint64_t>(config.training.seed));
  if (!job.resume_checkpoint().empty())
    LoadCheckpointParts(job.resume_checkpoint(), hdp.model(), hdp.sync());
  else if (!job.init_from().empty())
    LoadHfWeights(hdp.model(), job.init_from());
  const LrSchedule schedule = config.schedule();
  int64_t sync_bytes = 0;  // reduce-scatter + all-gather of every parameter, per step
  for (const Tensor& p : hdp.model().trainable()) sync_bytes += p.bytes();
  sync_bytes = sync_bytes * 2 * (world - 1) / world;
  TraceFile trace = OpenTrace(rank);
  const RunTrace run_trace(config, rank, generation, "rank " + std::to_string(rank));
  for (uint64_t step = job.start_step(); step < job.total_steps(); ++step) {
    heartbeat.SetStep(step);
    comm.SetStep(static_cast<int64_t>(step));
    const auto t0 = std::chrono::steady_clock::now();
    trace::Scope step_scope("step " + std::to_string(step + 1), "step",
                            {trace::Int("step", static_cast<int64_t>(step + 1))});
    proto::PlanRequest req;
    req.set_rank(rank);
    req.set_step(step);
    req.set_generation(generation);
    const proto::PlanReply reply = [&] {
      const trace::Scope s("get plan", "coordinator");
      return client.GetPlan(req);
    }();
    StepTimes times;
    times.fetch_ms = MsSince(t0);
    SM_CHECK(reply.plan().step() == step)
        << "asked for the plan of step " << step << ", got step " << reply.plan().step();
    SM_CHECK(reply.batch_size() == reply.plan().sequences_size())
        << "step " << step << ": " << reply.batch_size() << " batch entries for "
        << reply.plan().sequences_size() << " plan sequences";
    TokenReader::Tokens tokens = [&](uint64_t seq, int64_t begin, int64_t end,
                                     std::vector<int32_t>& out) {
      ReadPlannedTokens(reply, datasets, seq, begin, end, out);
    };
    TokenReader::Mask trained;  // chat data: the loss mask of the sequence ReadPlannedTokens read
    if (data.has_masks())
      trained = [&](uint64_t seq, int64_t begin, int64_t end, std::vector<uint8_t>& out) {
        const proto::BatchSequence& b = reply.batch(static_cast<int>(seq));
        data.ReadTrained(static_cast<int>(b.dataset()), static_cast<int64_t>(b.sequence()), begin,
                         end - begin, out);
      };
    const TokenReader read(std::move(tokens), std::move(trained));
    const double wait_before = link.wait_ms();
    const float lr = schedule.At(static_cast<int64_t>(step));
    const HdpStepResult done = hdp.Run(reply.plan(), reply.target_tokens(), read, lr,
                                       static_cast<float>(config.training.grad_clip));
    times.ring_wait_ms = link.wait_ms() - wait_before;
    times.step_ms = MsSince(t0);
    if (trace) WriteTrace(trace.get(), rank, reply.plan(), done.run, times);
    proto::MetricsReport metrics = MetricsOf(rank, step, generation, done, lr, times, sync_bytes);
    metrics.set_rss_mib(ResidentMiB());
    if (offload.enabled()) *metrics.mutable_offload() = ReportOf(offload.TakeStepFigures());
    if (activations.store()) activations.TakeStepFigures(*metrics.mutable_offload());
    if (param_store) TakeParameterFigures(*param_store, *metrics.mutable_offload());
    const int64_t eval = config.training.eval_interval;
    if (eval > 0 && (step + 1) % eval == 0) {
      const trace::Scope s("validation", "step");
      const double val = ValidationLoss(hdp, comm, validation, data, cost,
                                        scheduler::StepPlannerOptions::FromConfig(config, world));
      if (!std::isnan(val)) metrics.set_val_loss(val);  // NaN: no held-out sequences
    }
    {
      const trace::Scope s("report metrics", "coordinator");
      client.ReportMetrics(metrics);
    }
    if (reply.checkpoint_after()) {
      const trace::Scope s("checkpoint", "checkpoint",
                           {trace::Int("step", static_cast<int64_t>(step + 1))});
      CommitPart(client, config, hdp, world, generation, step + 1);
    }
    trace::Flush();
    if (reply.last_step()) break;  // a stop was requested: this step's checkpoint ends the job
  }
  // Every rank's last commit is in before anyone leaves (the coordinator then finishes).
  comm.Barrier();
}

}  // namespace

int RunWorkerRank(const WorkerArgs& args) {
  MpiCommunicator probe(MPI_COMM_WORLD);
  const int rank = probe.rank(), world = probe.size();
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);

  ClientOptions client_options;
  client_options.tls_root_cert_file = args.tls_root;
  client_options.tls_cert_file = args.tls_cert;
  client_options.tls_key_file = args.tls_key;
  CoordinatorClient client(args.coordinator, args.token, client_options);
  proto::RegisterRequest reg;
  reg.set_rank(rank);
  reg.set_world_size(world);
  reg.set_hostname(host);
  reg.set_pid(getpid());
  const proto::RegisterReply job = client.Register(reg);
  const RunConfig config = RunConfig::Parse(job.config_toml(), "the coordinator's configuration");

  // Heartbeats start at once: building the model may take longer than the timeout.
  HeartbeatThread heartbeat(client, rank, job.generation(), job.start_step(),
                            config.distributed.heartbeat_timeout_s);
  // Any error from here on ends the process at once (Die), whatever MPI state it leaves.
  try {
    MpiCommunicator comm(MPI_COMM_WORLD, CommOptions{std::chrono::milliseconds(static_cast<int64_t>(
                                             config.distributed.comm_deadline_s * 1000))});
    TrainSteps(client, job, config, comm, heartbeat);
  } catch (const Error& e) {
    Die(rank, e.what());
  }
  return 0;
}

int RunWorker(const Args& args) {
  WorkerArgs parsed;
  if (!ParseArgs(args, parsed)) return 0;
  mpi::Session session(nullptr, nullptr);
  return RunWorkerRank(parsed);
}

}  // namespace seqmesh::launch
