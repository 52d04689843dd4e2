// `seqmesh coordinator`: serves one attempt of a multi-process job (docs/COORDINATOR.md) until
// its last step is committed (exit 0), a worker is declared dead (exit 3, with a root-cause
// line), or SIGINT/SIGTERM (exit 128 + signal). The launcher starts it, reads the chosen port
// from --port-file, and on a failure restarts it with --resume.
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "launch/command.h"
#include "launch/coordinator.h"
#include "launch/flags.h"
#include "launch/preflight.h"
#include "launch/stop_signals.h"
#include "launch/training_data.h"
#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/hf_checkpoint.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

constexpr int kExitWorkerDead = 3;

bool IsLoopback(const std::string& address) {
  return address == "localhost" || address == "::1" || address == "[::1]" ||
         address.rfind("127.", 0) == 0;
}

}  // namespace

namespace {

struct CoordinatorArgs {
  std::string config_path, port_file, token_file, job_id;
  int64_t world_size = 0, port = 0;
  ServerOptions server;
  bool resume = false, overwrite = false;
  std::string init_from;
  std::vector<std::string> overrides;
};

// The flags, checked; nullopt when the help was printed.
std::optional<CoordinatorArgs> ParseArgs(const Args& args) {
  CoordinatorArgs a;
  FlagParser flags(
      "coordinator",
      "plan and serve the steps of a multi-process job for N worker ranks over gRPC (exit status: "
      "0 finished, 3 a worker was declared dead, 128+S stopped by signal S, 1 any other error)",
      "seqmesh coordinator --config examples/hdp.toml --world-size 4 --port-file port "
      "--token-file token");
  flags.String("--config", "FILE", &a.config_path, "the run's TOML configuration", Required::kYes)
      .Int("--world-size", "N", &a.world_size, "worker ranks of the job", 1, Required::kYes)
      .String("--address", "ADDR", &a.server.address,
              "the interface to serve on (loopback unless told otherwise)")
      .Int("--port", "P", &a.port, "the port; 0 picks a free one", 0)
      .String("--port-file", "F", &a.port_file, "write the chosen port to F (atomically)")
      .String("--token-file", "F", &a.token_file,
              "the job token (else SEQMESH_JOB_TOKEN); every worker call must carry it")
      .String("--job-id", "ID", &a.job_id, "the job's name (default: host-pid-time)")
      .String("--tls-cert", "F", &a.server.tls_cert_file,
              "PEM certificate: serve over TLS (workers need it as their root)")
      .String("--tls-key", "F", &a.server.tls_key_file, "PEM key of --tls-cert")
      .String("--tls-client-ca", "F", &a.server.tls_client_ca_file,
              "mutual TLS: refuse clients without a certificate this CA signed")
      .RunStart(&a.resume, &a.overwrite, &a.init_from)
      .ConfigOverrides(&a.overrides);
  if (!flags.Parse(args)) return std::nullopt;
  SM_CHECK(a.world_size <= (1 << 20)) << "--world-size must be an integer in [1, " << (1 << 20)
                                      << "], got '" << a.world_size << "'";
  SM_CHECK(a.port <= 65535) << "--port must be an integer in [0, 65535], got '" << a.port << "'";
  a.server.port = static_cast<int>(a.port);
  if (a.job_id.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    a.job_id = std::string(host) + "-" + std::to_string(::getpid()) + "-" +
               std::to_string(static_cast<long long>(std::time(nullptr)));
  }
  return a;
}

// Serves until the job has an outcome or a signal stops it; returns the exit status.
// The first SIGINT or SIGTERM stops the job gracefully (its current step, then a checkpoint);
// a second stops it at once.
int Serve(Coordinator& coordinator, CoordinatorServer& server, const RunConfig& config) {
  while (!coordinator.WaitForOutcome(std::chrono::milliseconds(100))) {
    const int sig = StopSignals::Received();
    if (StopSignals::Count() >= 2) {
      std::cout << "coordinator: stopping at once on a second signal " << sig << " after step "
                << coordinator.completed_steps() << std::endl;
      server.Shutdown(std::chrono::milliseconds(1000));
      return 128 + sig;
    }
    if (sig && !coordinator.stop_requested()) {
      const uint64_t last = coordinator.RequestStop();
      std::cout << "coordinator: signal " << sig << ": the job stops after step " << last
                << " with a checkpoint (--resume continues; Ctrl-C again stops at once)"
                << std::endl;
    }
  }
  if (const auto failure = coordinator.Failure()) {
    // A dead rank's verdict names the rank; any other failure is the job's own ("job failed:").
    std::cerr << "coordinator: "
              << (failure->kind == JobFailure::Kind::kDeadRank ? "" : "job failed: ")
              << failure->message << std::endl;
    // Keep answering for a moment, so the workers' heartbeats carry the abort to them.
    const double drain_s = std::min(2.0, config.distributed.heartbeat_timeout_s);
    std::this_thread::sleep_for(std::chrono::duration<double>(drain_s));
    server.Shutdown(std::chrono::milliseconds(500));
    return failure->kind == JobFailure::Kind::kDeadRank ? kExitWorkerDead : 1;
  }
  std::cout << "coordinator: " << (coordinator.stop_requested() ? "stopped after " : "finished ")
            << coordinator.total_steps() << " steps; checkpoint "
            << CheckpointStepDir(config, coordinator.committed_step()) << std::endl;
  server.Shutdown();
  return 0;
}

}  // namespace

int RunCoordinator(const Args& args) {
  StopSignals signals;  // first: before gRPC starts its threads
  const std::optional<CoordinatorArgs> a = ParseArgs(args);
  if (!a) return 0;
  const bool tls = !a->server.tls_cert_file.empty();
  if (!tls && !IsLoopback(a->server.address))
    std::cerr << "coordinator: warning: serving " << a->server.address
              << " without TLS: the job token crosses the network in clear text\n";
  CoordinatorOptions options;
  options.world_size = static_cast<int>(a->world_size);
  options.token = ReadJobToken(a->token_file);
  options.resume = a->resume;
  options.overwrite = a->overwrite;
  options.job_id = a->job_id;
  options.progress = ::isatty(STDOUT_FILENO) == 1;
  RunConfig config = RunConfig::Load(a->config_path, a->overrides);
  if (!a->init_from.empty()) {
    options.init_from = fs::absolute(a->init_from).lexically_normal().string();
    config.model = ReadHfConfig(options.init_from + "/config.json");
    config.Validate();
    if (!config.data.path.empty())  // the vocabulary must be the one the ids came from
      CheckInitFromTokenizer(OpenTrainingData(config), options.init_from, config.model.vocab);
  }
  Coordinator coordinator(config, options);
  CoordinatorServer server(coordinator, a->server);
  if (!a->port_file.empty()) {
    const std::string text = std::to_string(server.port()) + "\n";
    WriteFileAtomically(a->port_file, text.data(), text.size());
  }
  std::cout << "coordinator: job " << coordinator.job_id() << " generation "
            << coordinator.generation() << ": serving " << a->world_size << " ranks on "
            << server.target()
            << (!tls                                   ? " (plaintext)"
                : a->server.tls_client_ca_file.empty() ? " (TLS)"
                                                       : " (mutual TLS)")
            << ", steps " << coordinator.start_step() << ".." << coordinator.total_steps()
            << std::endl;
  if (coordinator.start_step() >= coordinator.total_steps())
    std::cout << "coordinator: the run is complete (step " << coordinator.total_steps()
              << " committed): nothing to train; waiting for the workers to register and leave"
              << std::endl;
  return Serve(coordinator, server, config);
}

}  // namespace seqmesh::launch
