// `seqmesh launch`: starts an HDP training job (docs/LAUNCH.md).
//
//   seqmesh launch -n 4 --config X [--max-restarts R] [--resume] [--tls-cert F --tls-key F
//                  [--tls-root F] [--tls-client-ca F --tls-client-cert F --tls-client-key F]]
//                  [--section.key=value ...]
//
// (`seqmesh launch --help` describes every flag and configuration key; -n is also --nproc.)
//
// Alone (no launcher variables), it makes a random job token, starts `seqmesh coordinator` and
// N `seqmesh worker`s through mpirun on this machine, and watches both. When a worker dies (or
// the coordinator declares one dead), it stops the rest, prints a root-cause line (rank, exit
// code or signal, last step), and, up to R times, restarts everything from the last committed
// checkpoint. Inside an allocation another launcher made (mpirun, srun; torchrun's variables
// are read too), every process is one rank: rank 0 starts the coordinator, every rank runs its
// worker in-process; restarts are then that launcher's job.
#include <fcntl.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <string_view>
#include <thread>

#include "launch/command.h"
#include "launch/flags.h"
#include "launch/launch_env.h"
#include "launch/machine.h"
#include "launch/preflight.h"
#include "launch/root_cause.h"
#include "launch/run_dir.h"
#include "launch/stop_signals.h"
#include "launch/training_data.h"
#include "launch/worker.h"
#include "parallel/mpi/mpi_session.h"
#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/json.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct LaunchArgs {
  int n = 0;
  std::string config;
  int max_restarts = 0;
  bool resume = false;
  bool overwrite = false;      // a fresh run in a used directory: move the earlier run aside
  bool oversubscribe = false;  // more than 4 ranks per core
  std::string init_from;       // a Hugging Face directory to start from
  std::string tls_cert, tls_key;
  std::string tls_root;  // what workers check the coordinator against; empty: tls_cert
  std::string tls_client_ca, tls_client_cert, tls_client_key;  // mutual TLS
  std::vector<std::string> overrides;
  const std::string& root() const { return tls_root.empty() ? tls_cert : tls_root; }
};

// The flags, checked; nullopt when -h, --help or --list-flags printed instead.
std::optional<LaunchArgs> ParseArgs(const Args& args) {
  LaunchArgs a;
  int64_t n = 0, max_restarts = 0;
  FlagParser flags("launch",
                   "start an HDP training job: a coordinator and N workers (mpirun), with restarts",
                   "seqmesh launch -n 4 --config examples/hdp.toml --max-restarts 2 "
                   "--training.steps=100");
  flags
      .Int("-n", "N", &n,
           "workers of a local job (required there); inside mpirun or srun: 0 or the world size", 0)
      .Int("--nproc", "N", &n, "the same as -n", 0)
      .String("--config", "FILE", &a.config, "the run's TOML configuration", Required::kYes)
      .Int("--max-restarts", "R", &max_restarts,
           "restart the job from its last committed checkpoint up to R times when it fails", 0)
      .RunStart(&a.resume, &a.overwrite, &a.init_from)
      .Switch("--oversubscribe", &a.oversubscribe,
              "allow more than 4 ranks per core (more ranks than cores is allowed, with a warning)")
      .String("--tls-cert", "F", &a.tls_cert, "PEM certificate: serve the coordinator over TLS")
      .String("--tls-key", "F", &a.tls_key, "PEM key of --tls-cert")
      .String("--tls-root", "F", &a.tls_root,
              "PEM root the workers check the coordinator against (default: --tls-cert)")
      .String("--tls-client-ca", "F", &a.tls_client_ca,
              "mutual TLS: the coordinator refuses workers without a certificate this CA signed")
      .String("--tls-client-cert", "F", &a.tls_client_cert,
              "mutual TLS: the workers' PEM certificate")
      .String("--tls-client-key", "F", &a.tls_client_key,
              "mutual TLS: PEM key of --tls-client-cert")
      .ConfigOverrides(&a.overrides);  // passed on to the coordinator
  if (!flags.Parse(args)) return std::nullopt;
  SM_CHECK(!(a.resume && a.overwrite))
      << "launch: --resume continues the run in checkpoint.dir and --overwrite moves it aside: "
         "pass one";
  // The fields are ints.
  SM_CHECK(n <= INT_MAX) << "launch: -n must be a non-negative integer, got '" << n << "'";
  SM_CHECK(max_restarts <= INT_MAX)
      << "launch: --max-restarts must be a non-negative integer, got '" << max_restarts << "'";
  a.n = static_cast<int>(n);
  a.max_restarts = static_cast<int>(max_restarts);
  SM_CHECK(a.tls_cert.empty() == a.tls_key.empty())
      << "launch: --tls-cert and --tls-key go together";
  const bool mutual = !a.tls_client_ca.empty();
  SM_CHECK(mutual == !a.tls_client_cert.empty() && mutual == !a.tls_client_key.empty())
      << "launch: --tls-client-ca, --tls-client-cert and --tls-client-key go together";
  SM_CHECK((!mutual && a.tls_root.empty()) || !a.tls_cert.empty())
      << "launch: --tls-root and mutual TLS need the coordinator's --tls-cert and --tls-key";
  return a;
}

std::string RandomToken() {
  unsigned char bytes[32];
  std::ifstream f("/dev/urandom", std::ios::binary);
  SM_CHECK(f.read(reinterpret_cast<char*>(bytes), sizeof(bytes)).good())
      << "launch: cannot read /dev/urandom for the job token";
  static const char* kHex = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token += kHex[b >> 4];
    token += kHex[b & 15];
  }
  return token;
}

std::string SelfPath() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  SM_CHECK(!ec) << "launch: cannot find this program's path (/proc/self/exe): " << ec.message();
  return p.string();
}

// A child process whose stderr is copied to ours and kept (its last 64 KiB) for the root cause.
class Child {
 public:
  Child(const std::string& name, const std::vector<std::string>& argv) : name_(name) {
    int fds[2];
    SM_CHECK(pipe(fds) == 0) << "launch: pipe: " << std::strerror(errno);
    pid_ = fork();
    SM_CHECK(pid_ >= 0) << "launch: fork: " << std::strerror(errno);
    if (pid_ == 0) {
      // Its own process group, so the whole tree (mpirun and its ranks) can be signalled.
      setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      pthread_sigmask(SIG_SETMASK, &none, nullptr);
      dup2(fds[1], 2);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> c;
      for (const std::string& a : argv) c.push_back(const_cast<char*>(a.c_str()));
      c.push_back(nullptr);
      execvp(c[0], c.data());
      std::fprintf(stderr, "launch: cannot run %s: %s\n", c[0], std::strerror(errno));
      std::_Exit(127);
    }
    setpgid(pid_, pid_);
    close(fds[1]);
    reader_ = std::thread([this, fd = fds[0]] {
      char buf[4096];
      while (true) {
        const ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) break;
        fwrite(buf, 1, n, stderr);
        Keep(std::string_view(buf, n));
      }
      Keep("\n");  // a last line without its newline
      close(fd);
    });
  }
  ~Child() {
    if (running()) Kill(SIGKILL);
    Reap(true);
    if (reader_.joinable()) reader_.join();
  }
  bool running() const { return !exited_; }
  // Non-blocking (block = false) or blocking wait; true once exited.
  bool Reap(bool block) {
    if (exited_) return true;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = status;
    }
    return exited_;
  }
  void Kill(int sig) {
    if (!exited_) kill(-pid_, sig);  // the process group
  }
  // SIGTERM, then SIGKILL after `grace`.
  void Stop(std::chrono::milliseconds grace) {
    Kill(SIGTERM);
    const auto stop = Clock::now() + grace;
    while (!Reap(false) && Clock::now() < stop)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!exited_) {
      Kill(SIGKILL);
      Reap(true);
    }
    if (reader_.joinable()) reader_.join();
  }
  void JoinOutput() {
    if (reader_.joinable()) reader_.join();
  }
  int status() const { return status_; }
  bool ok() const { return exited_ && WIFEXITED(status_) && WEXITSTATUS(status_) == 0; }
  std::string Outcome() const {
    if (!exited_) return "still running";
    if (WIFEXITED(status_)) return "exit code " + std::to_string(WEXITSTATUS(status_));
    if (WIFSIGNALED(status_)) {
      const int sig = WTERMSIG(status_);
      return "signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
    }
    return "status " + std::to_string(status_);
  }
  // Its last lines (64 KiB), each with when it arrived: which came first decides a root cause.
  std::vector<StderrLine> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return {lines_.begin(), lines_.end()};
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::thread reader_;
  std::mutex mu_;
  std::string partial_;  // the current line, until its newline comes
  std::deque<StderrLine> lines_;
  size_t kept_bytes_ = 0;

  void Keep(std::string_view chunk) {
    const double now = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t start = 0; start < chunk.size();) {
      const size_t end = chunk.find('\n', start);
      partial_.append(chunk.substr(start, end == std::string_view::npos ? end : end - start));
      if (end == std::string_view::npos) break;
      start = end + 1;
      if (partial_.empty()) continue;
      kept_bytes_ += partial_.size();
      lines_.push_back({now, std::move(partial_)});
      partial_.clear();
      while (kept_bytes_ > 65536) {
        kept_bytes_ -= lines_.front().text.size();
        lines_.pop_front();
      }
    }
  }
};

// The size of `path` now (0 when it does not exist): where this attempt's metrics start.
std::streamoff SizeNow(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<std::streamoff>(size);
}

// The last step the coordinator logged (metrics JSONL) after byte `from` (this attempt's
// records: an earlier run's are before it), or -1.
int64_t LastLoggedStep(const std::string& jsonl, std::streamoff from) {
  std::ifstream f(jsonl);
  f.seekg(from);
  std::string line, last;
  while (std::getline(f, line))
    if (!line.empty()) last = line;
  std::smatch m;
  static const std::regex step(R"re("step"\s*:\s*(\d+))re");
  if (std::regex_search(last, m, step)) return std::stoll(m[1].str());
  return -1;
}

bool WaitForPortFile(const std::string& path, Child& coordinator, int* port) {
  const auto stop = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < stop && StopSignals::Received() == 0) {
    std::ifstream f(path);
    if (f >> *port && *port > 0) return true;
    if (coordinator.Reap(false)) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::vector<std::string> CoordinatorArgv(const std::string& self, const LaunchArgs& a, int n,
                                         const std::string& address, int port,
                                         const std::string& port_file,
                                         const std::string& token_file, bool resume) {
  std::vector<std::string> argv = {self,           "coordinator",
                                   "--config",     a.config,
                                   "--world-size", std::to_string(n),
                                   "--address",    address,
                                   "--port",       std::to_string(port),
                                   "--port-file",  port_file,
                                   "--token-file", token_file};
  if (resume) argv.push_back("--resume");
  if (a.overwrite && !resume) argv.push_back("--overwrite");
  if (!a.init_from.empty()) argv.insert(argv.end(), {"--init-from", a.init_from});
  if (!a.tls_cert.empty()) {
    argv.insert(argv.end(), {"--tls-cert", a.tls_cert, "--tls-key", a.tls_key});
  }
  if (!a.tls_client_ca.empty()) argv.insert(argv.end(), {"--tls-client-ca", a.tls_client_ca});
  for (const std::string& o : a.overrides) argv.push_back(o);
  return argv;
}

// A fresh random job token in `token_file`, readable by this user only.
void WriteJobToken(const std::string& token_file) {
  const std::string token = RandomToken() + "\n";
  const int fd = open(token_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  SM_CHECK(fd >= 0) << "launch: cannot write the job token to '" << token_file
                    << "': " << std::strerror(errno);
  fchmod(fd, 0600);
  const bool ok = write(fd, token.data(), token.size()) == static_cast<ssize_t>(token.size());
  close(fd);
  SM_CHECK(ok) << "launch: cannot write the job token to '" << token_file << "'";
}

std::vector<std::string> WorkersArgv(const std::string& self, const LaunchArgs& a, int port,
                                     const std::string& token_file) {
  std::vector<std::string> mpirun = {"mpirun"};
  if (geteuid() == 0) mpirun.push_back("--allow-run-as-root");
  // One machine: shared memory between the ranks; more ranks than cores is allowed.
  mpirun.insert(mpirun.end(), {"--oversubscribe", "--mca", "btl", "self,vader", "-n",
                               std::to_string(a.n), self, "worker", "--coordinator",
                               "127.0.0.1:" + std::to_string(port), "--token-file", token_file});
  if (!a.root().empty()) mpirun.insert(mpirun.end(), {"--tls-root", a.root()});
  if (!a.tls_client_cert.empty())
    mpirun.insert(mpirun.end(), {"--tls-cert", a.tls_client_cert, "--tls-key", a.tls_client_key});
  return mpirun;
}

// How one attempt ended: an exit status to return now (finished, or stopped by a signal), or
// the failure to report before a restart.
struct AttemptEnd {
  std::optional<int> exit;
  std::string failure;
};

// Watches the coordinator and the workers until the job ends or one side fails.
// The first Ctrl-C or SIGTERM goes to the coordinator as SIGTERM: the job finishes its step,
// commits a checkpoint and ends (exit 0); a second stops everything at once.
AttemptEnd WatchAttempt(Child& coordinator, Child& workers, int attempt) {
  bool forwarded = false;
  while (true) {
    if (StopSignals::Count() >= 2) {
      workers.Stop(std::chrono::seconds(10));
      coordinator.Stop(std::chrono::seconds(5));
      std::fprintf(stderr, "launch: stopped at once by a second signal %d\n",
                   StopSignals::Received());
      return {128 + StopSignals::Received(), ""};
    }
    if (StopSignals::Received() && !forwarded) {
      coordinator.Kill(SIGTERM);
      forwarded = true;
      std::fprintf(stderr,
                   "launch: signal %d: the job finishes its step, commits a checkpoint and "
                   "stops (--resume continues it; Ctrl-C again stops at once)\n",
                   StopSignals::Received());
    }
    if (workers.Reap(false)) {
      if (!workers.ok()) return {std::nullopt, "mpirun ended with " + workers.Outcome()};
      // The coordinator finishes once the last checkpoint is committed.
      const auto stop = Clock::now() + std::chrono::seconds(60);
      while (!coordinator.Reap(false) && Clock::now() < stop)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (!coordinator.running() && coordinator.ok()) {
        coordinator.JoinOutput();
        workers.JoinOutput();
        if (forwarded)
          std::fprintf(stderr, "launch: job stopped with a checkpoint (attempt %d)\n", attempt + 1);
        else
          std::fprintf(stderr, "launch: job finished after %d attempt(s)\n", attempt + 1);
        return {0, ""};
      }
      return {std::nullopt, "the workers finished but the coordinator " + coordinator.Outcome()};
    }
    if (coordinator.Reap(false)) {
      if (coordinator.ok()) {
        // Done: give the workers time to leave.
        const auto stop = Clock::now() + std::chrono::seconds(60);
        while (!workers.Reap(false) && Clock::now() < stop)
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (workers.ok()) continue;  // handled above on the next turn
      }
      return {std::nullopt, "the coordinator ended with " + coordinator.Outcome()};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int RunLocal(const LaunchArgs& a, const RunConfig& config) {
  SM_CHECK(a.n >= 1) << "launch: -n N (the number of workers, >= 1) is required";
  {
    // What can fail is refused before any process starts (the model as --init-from sets it).
    RunConfig checked = config;
    if (!a.init_from.empty()) checked.model = ReadHfConfig(a.init_from + "/config.json");
    PreflightJob(checked, OpenTrainingData(checked), {a.n, a.oversubscribe, true, a.init_from},
                 std::cerr);
    if (!config.distributed.cost.empty()) {
      const std::string warning = CostFileMachineWarning(
          scheduler::LoadCostModel(config.distributed.cost), config.distributed.cost,
          ThisMachine(static_cast<int>(config.training.threads), a.n));
      if (!warning.empty()) std::cerr << "launch: " << warning << std::endl;
    }
  }
  const std::string self = SelfPath();
  const fs::path job_dir = fs::path(config.checkpoint.dir) / ".launch";
  fs::create_directories(job_dir);
  const std::string token_file = (job_dir / "token").string();
  // A used run directory is refused (or, with --overwrite, moved aside) before any process starts.
  if (!a.resume) PrepareFreshRun(config, a.overwrite, std::cerr, "launch");
  WriteJobToken(token_file);
  StopSignals signals;
  for (int attempt = 0;; ++attempt) {
    const bool resume = a.resume || attempt > 0;
    const std::streamoff metrics_start = SizeNow(config.metrics_path());
    const std::string port_file = (job_dir / "port").string();
    fs::remove(port_file);
    Child coordinator("coordinator",
                      CoordinatorArgv(self, a, a.n, "127.0.0.1", 0, port_file, token_file, resume));
    int port = 0;
    if (!WaitForPortFile(port_file, coordinator, &port)) {
      coordinator.Stop(std::chrono::seconds(5));
      if (StopSignals::Received()) return 128 + StopSignals::Received();
      std::fprintf(stderr, "launch: the coordinator did not start (%s)\n",
                   coordinator.Outcome().c_str());
      return 1;
    }
    std::fprintf(stderr, "launch: attempt %d: coordinator on 127.0.0.1:%d, %d workers%s\n",
                 attempt + 1, port, a.n, resume ? ", resuming from the last checkpoint" : "");
    Child workers("mpirun", WorkersArgv(self, a, port, token_file));
    const AttemptEnd end = WatchAttempt(coordinator, workers, attempt);
    if (end.exit) return *end.exit;
    workers.Stop(std::chrono::seconds(10));
    coordinator.Stop(std::chrono::seconds(5));
    std::string cause = RootCause(workers.lines(), coordinator.lines());
    if (cause.empty()) cause = end.failure;
    const int64_t last = LastLoggedStep(config.metrics_path(), metrics_start);
    const std::string done =
        last >= 0 ? "last completed step " + std::to_string(last) : "no step completed";
    std::fprintf(stderr, "launch: root cause: %s; %s (attempt %d)\n", cause.c_str(), done.c_str(),
                 attempt + 1);
    if (StopSignals::Received()) {  // stopped on request: no restart
      std::fprintf(stderr, "launch: stopped by signal %d\n", StopSignals::Received());
      return 128 + StopSignals::Received();
    }
    if (attempt >= a.max_restarts) {
      std::fprintf(stderr, "launch: giving up after %d restart(s) (--max-restarts %d)\n", attempt,
                   a.max_restarts);
      return 1;
    }
    std::fprintf(stderr,
                 "launch: restarting all %d workers from the last committed checkpoint "
                 "(restart %d of %d)\n",
                 a.n, attempt + 1, a.max_restarts);
  }
}

// Inside another launcher's allocation: this process is one rank.
int RunJoined(const LaunchArgs& a, const RunConfig& config, const LaunchEnv& env) {
  SM_CHECK(a.n == 0 || a.n == env.world_size)
      << "launch: -n " << a.n << " disagrees with the " << env.source << " world of "
      << env.world_size << " ranks";
  SM_CHECK(a.max_restarts == 0)
      << "launch: --max-restarts needs a local job; inside " << env.source
      << " restarts are that launcher's (e.g. srun --requeue, torchrun --max-restarts)";
  // The allocation's launcher signals the ranks (scancel -s TERM, Ctrl-C to mpirun or srun): the
  // first signal is the graceful stop, which the coordinator runs (rank 0 passes it on as SIGHUP,
  // never a second signal, in case it did not come to the coordinator as well); the ranks go on
  // to the step the coordinator makes the last. Ctrl-C after it stops the rank at once.
  StopSignals signals;  // before MPI and every other thread
  mpi::Session session(nullptr, nullptr);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  SM_CHECK(size == env.world_size && rank == env.rank)
      << "launch: " << env.source << " says rank " << env.rank << " of " << env.world_size
      << " but the MPI world is rank " << rank << " of " << size
      << ": seqmesh workers need one MPI world (start them with mpirun or srun; torchrun's "
         "processes do not form one)";
  const std::string self = SelfPath();
  std::unique_ptr<Child> coordinator;
  // Rank 0 starts the coordinator and tells the others where it is and the job token, over
  // MPI (the allocation's own channel).
  char token[65] = {0};
  char address[256] = {0};
  int port = 0;
  if (rank == 0) {
    const std::string t = RandomToken();
    std::snprintf(token, sizeof(token), "%s", t.c_str());
    std::string host = env.master_addr;
    if (host.empty()) {
      char name[256] = {0};
      gethostname(name, sizeof(name) - 1);
      host = size == 1 ? "127.0.0.1" : name;
    }
    std::snprintf(address, sizeof(address), "%s", host.c_str());
    const fs::path job_dir = fs::path(config.checkpoint.dir) / ".launch";
    fs::create_directories(job_dir);
    const std::string token_file = (job_dir / "token").string();
    const std::string text = t + "\n";
    WriteFileAtomically(token_file, text.data(), text.size());
    fs::permissions(token_file, fs::perms::owner_read | fs::perms::owner_write);
    const std::string port_file = (job_dir / "port").string();
    fs::remove(port_file);
    coordinator = std::make_unique<Child>(
        "coordinator",
        CoordinatorArgv(self, a, size, host, env.master_port, port_file, token_file, a.resume));
    SM_CHECK(WaitForPortFile(port_file, *coordinator, &port))
        << "launch: the coordinator did not start (" << coordinator->Outcome() << ")";
  }
  MPI_Bcast(token, sizeof(token), MPI_CHAR, 0, MPI_COMM_WORLD);
  MPI_Bcast(address, sizeof(address), MPI_CHAR, 0, MPI_COMM_WORLD);
  MPI_Bcast(&port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  WorkerArgs w;
  w.coordinator = std::string(address) + ":" + std::to_string(port);
  w.token = token;
  w.tls_root = a.root();
  w.tls_cert = a.tls_client_cert;
  w.tls_key = a.tls_client_key;
  std::atomic<bool> done{false};
  std::thread watch([&] {
    bool forwarded = false;
    while (!done.load()) {
      if (StopSignals::Count() >= 2) {
        std::fprintf(stderr, "launch: rank %d stopped at once by a second signal %d\n", rank,
                     StopSignals::Received());
        if (coordinator) coordinator->Kill(SIGKILL);
        std::_Exit(128 + StopSignals::Received());
      }
      if (StopSignals::Count() == 1 && !forwarded) {
        forwarded = true;
        if (coordinator) {
          coordinator->Kill(SIGHUP);
          std::fprintf(stderr,
                       "launch: signal %d: the job finishes its step, commits a checkpoint and "
                       "stops (--resume continues it; Ctrl-C again stops at once)\n",
                       StopSignals::Received());
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  int status = 1;
  try {
    status = RunWorkerRank(w);
  } catch (...) {
    done.store(true);
    watch.join();
    throw;
  }
  done.store(true);
  watch.join();
  if (coordinator) {
    const auto stop = Clock::now() + std::chrono::seconds(60);
    while (!coordinator->Reap(false) && Clock::now() < stop)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    coordinator->JoinOutput();
    if (!coordinator->ok()) return 1;
  }
  return status;
}

// The job of checked flags `a`: alone, or as one rank of another launcher's allocation.
int Launch(const LaunchArgs& a) {
  // A bad configuration fails here, before anything starts.
  const RunConfig config = RunConfig::Load(a.config, a.overrides);
  const LaunchEnv env = DetectLaunchEnv();
  std::fprintf(stderr, "launch: %s\n", env.Describe().c_str());
  return env.joined() ? RunJoined(a, config, env) : RunLocal(a, config);
}

}  // namespace

int RunLaunch(const Args& args) {
  const std::optional<LaunchArgs> a = ParseArgs(args);
  return a ? Launch(*a) : 0;
}

}  // namespace seqmesh::launch
