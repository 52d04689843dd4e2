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
#include <thread>

#include "launch/command.h"
#include "launch/coordinator.h"
#include "launch/flags.h"
#include "launch/stop_signals.h"
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

int RunCoordinator(const Args& args) {
  StopSignals signals;  // first: before gRPC starts its threads
  std::string config_path, port_file, token_file, job_id;
  int64_t world_size = 0, port = 0;
  ServerOptions server_options;
  bool resume = false;
  std::vector<std::string> overrides;
  CoordinatorOptions options;
  FlagParser flags(
      "coordinator",
      "plan and serve the steps of a multi-process job for N worker ranks over gRPC (exit status: "
      "0 finished, 3 a worker was declared dead, 128+S stopped by signal S, 1 any other error)",
      "seqmesh coordinator --config examples/hdp.toml --world-size 4 --port-file port "
      "--token-file token");
  flags.String("--config", "FILE", &config_path, "the run's TOML configuration", Required::kYes)
      .Int("--world-size", "N", &world_size, "worker ranks of the job", 1, Required::kYes)
      .String("--address", "ADDR", &server_options.address,
              "the interface to serve on (loopback unless told otherwise)")
      .Int("--port", "P", &port, "the port; 0 picks a free one", 0)
      .String("--port-file", "F", &port_file, "write the chosen port to F (atomically)")
      .String("--token-file", "F", &token_file,
              "the job token (else SEQMESH_JOB_TOKEN); every worker call must carry it")
      .String("--job-id", "ID", &job_id, "the job's name (default: host-pid-time)")
      .String("--tls-cert", "F", &server_options.tls_cert_file,
              "PEM certificate: serve over TLS (workers need it as their root)")
      .String("--tls-key", "F", &server_options.tls_key_file, "PEM key of --tls-cert")
      .String("--tls-client-ca", "F", &server_options.tls_client_ca_file,
              "mutual TLS: refuse clients without a certificate this CA signed")
      .Switch("--resume", &resume,
              "continue from the newest committed checkpoint in <checkpoint.dir>")
      .String("--init-from", "DIR", &options.init_from,
              "start from a Hugging Face directory (its config.json sets [model])")
      .ConfigOverrides(&overrides);
  if (!flags.Parse(args)) return 0;
  SM_CHECK(world_size <= (1 << 20))
      << "--world-size must be an integer in [1, " << (1 << 20) << "], got '" << world_size << "'";
  SM_CHECK(port <= 65535) << "--port must be an integer in [0, 65535], got '" << port << "'";
  server_options.port = static_cast<int>(port);
  const bool tls = !server_options.tls_cert_file.empty();
  if (!tls && !IsLoopback(server_options.address))
    std::cerr << "coordinator: warning: serving " << server_options.address
              << " without TLS: the job token crosses the network in clear text\n";
  options.world_size = static_cast<int>(world_size);
  options.token = ReadJobToken(token_file);
  options.resume = resume;
  if (job_id.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    job_id = std::string(host) + "-" + std::to_string(::getpid()) + "-" +
             std::to_string(static_cast<long long>(std::time(nullptr)));
  }
  options.job_id = job_id;

  RunConfig config = RunConfig::Load(config_path, overrides);
  if (!options.init_from.empty()) {
    options.init_from = fs::absolute(options.init_from).lexically_normal().string();
    config.model = ReadHfConfig(options.init_from + "/config.json");
    config.Validate();
  }
  Coordinator coordinator(config, options);
  CoordinatorServer server(coordinator, server_options);
  if (!port_file.empty()) {
    const std::string text = std::to_string(server.port()) + "\n";
    WriteFileAtomically(port_file, text.data(), text.size());
  }
  std::cout << "coordinator: job " << coordinator.job_id() << " generation "
            << coordinator.generation() << ": serving " << world_size << " ranks on "
            << server.target()
            << (!tls                                        ? " (plaintext)"
                : server_options.tls_client_ca_file.empty() ? " (TLS)"
                                                            : " (mutual TLS)")
            << ", steps " << coordinator.start_step() << ".." << coordinator.total_steps()
            << std::endl;
  if (coordinator.start_step() >= coordinator.total_steps())
    std::cout << "coordinator: the run is complete (step " << coordinator.total_steps()
              << " committed): nothing to train; waiting for the workers to register and leave"
              << std::endl;

  while (!coordinator.WaitForOutcome(std::chrono::milliseconds(100))) {
    if (const int sig = StopSignals::Received()) {
      std::cout << "coordinator: stopping on signal " << sig << " after step "
                << coordinator.completed_steps() << std::endl;
      server.Shutdown(std::chrono::milliseconds(1000));
      return 128 + sig;
    }
  }
  if (const auto failure = coordinator.Failure()) {
    std::cerr << "coordinator: " << failure->message << std::endl;
    // Keep answering for a moment, so the workers' heartbeats carry the abort to them.
    const double drain_s = std::min(2.0, config.distributed.heartbeat_timeout_s);
    std::this_thread::sleep_for(std::chrono::duration<double>(drain_s));
    server.Shutdown(std::chrono::milliseconds(500));
    return failure->kind == JobFailure::Kind::kDeadRank ? kExitWorkerDead : 1;
  }
  std::cout << "coordinator: finished " << coordinator.total_steps() << " steps; checkpoint "
            << CheckpointStepDir(config, coordinator.committed_step()) << std::endl;
  server.Shutdown();
  return 0;
}

}  // namespace seqmesh::launch
