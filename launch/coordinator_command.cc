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
#include "launch/stop_signals.h"
#include "runtime/check.h"
#include "runtime/files.h"

namespace seqmesh::launch {
namespace {

constexpr char kHelp[] =
    "usage: seqmesh coordinator --config FILE --world-size N [--address 127.0.0.1] [--port 0]\n"
    "           [--port-file F] [--token-file F] [--job-id ID] [--tls-cert F --tls-key F\n"
    "           [--tls-client-ca F]]\n"
    "           [--resume] [--section.key=value ...]\n"
    "  Plans every step of the job for N worker ranks and serves the plans over gRPC.\n"
    "  --port 0        pick a free port; --port-file F receives it (written atomically)\n"
    "  --token-file F  the job token (else the environment variable SEQMESH_JOB_TOKEN);\n"
    "                  every worker call must carry it\n"
    "  --tls-cert/key  PEM files: serve over TLS (workers need the certificate as root)\n"
    "  --tls-client-ca F  mutual TLS: refuse clients without a certificate this CA signed\n"
    "  --resume        continue from the newest committed checkpoint in <checkpoint.dir>\n"
    "  exit status: 0 finished, 3 a worker was declared dead, 128+S stopped by signal S,\n"
    "  1 any other error\n";

constexpr int kExitWorkerDead = 3;

bool IsLoopback(const std::string& address) {
  return address == "localhost" || address == "::1" || address == "[::1]" ||
         address.rfind("127.", 0) == 0;
}

int ParseInt(const std::string& flag, const std::string& value, int lo, int hi) {
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SM_CHECK(used == value.size() && !value.empty() && v >= lo && v <= hi)
      << flag << " must be an integer in [" << lo << ", " << hi << "], got '" << value << "'";
  return v;
}

}  // namespace

int RunCoordinator(const Args& args) {
  StopSignals signals;  // first: before gRPC starts its threads
  std::string config_path, port_file, token_file, job_id;
  int world_size = 0;
  ServerOptions server_options;
  bool resume = false;
  std::vector<std::string> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      SM_CHECK(i + 1 < args.size()) << a << " needs a value";
      return args[++i];
    };
    if (a == "--help") {
      std::cout << kHelp;
      return 0;
    } else if (a == "--config") {
      config_path = value();
    } else if (a == "--world-size") {
      world_size = ParseInt(a, value(), 1, 1 << 20);
    } else if (a == "--address") {
      server_options.address = value();
    } else if (a == "--port") {
      server_options.port = ParseInt(a, value(), 0, 65535);
    } else if (a == "--port-file") {
      port_file = value();
    } else if (a == "--token-file") {
      token_file = value();
    } else if (a == "--job-id") {
      job_id = value();
    } else if (a == "--tls-cert") {
      server_options.tls_cert_file = value();
    } else if (a == "--tls-key") {
      server_options.tls_key_file = value();
    } else if (a == "--tls-client-ca") {
      server_options.tls_client_ca_file = value();
    } else if (a == "--resume") {
      resume = true;
    } else {
      SM_CHECK(a.rfind("--", 0) == 0 && a.find('=') != std::string::npos)
          << "unknown argument '" << a << "' (overrides look like --section.key=value)\n"
          << kHelp;
      overrides.push_back(a);
    }
  }
  SM_CHECK(!config_path.empty()) << "missing --config FILE\n" << kHelp;
  SM_CHECK(world_size > 0) << "missing --world-size N\n" << kHelp;
  const bool tls = !server_options.tls_cert_file.empty();
  if (!tls && !IsLoopback(server_options.address))
    std::cerr << "coordinator: warning: serving " << server_options.address
              << " without TLS: the job token crosses the network in clear text\n";
  CoordinatorOptions options;
  options.world_size = world_size;
  options.token = ReadJobToken(token_file);
  options.resume = resume;
  if (job_id.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    job_id = std::string(host) + "-" + std::to_string(::getpid()) + "-" +
             std::to_string(static_cast<long long>(std::time(nullptr)));
  }
  options.job_id = job_id;

  const RunConfig config = RunConfig::Load(config_path, overrides);
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
