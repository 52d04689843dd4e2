// SIGINT, SIGTERM and SIGHUP for the long-running commands (train, coordinator, launch): blocked in
// every thread started after a StopSignals is made (OpenMP, oneDNN and gRPC workers included)
// and taken by one thread waiting in sigwait(), which only records the signal; the main loop
// polls StopSignals::Received() and acts. A handler must not run on a compute thread: oneDNN's
// JIT kernels keep data below the stack pointer, and a signal frame pushed there corrupts it
// (seen as heap corruption after a SIGINT mid-step). Make one before the first thread starts;
// one at a time per process.
//
// The first signal asks for the graceful stop; only SIGINT (Ctrl-C again) after it asks for the
// stop at once. A repeated SIGTERM or SIGHUP is the same request: schedulers deliver SIGTERM more
// than once (Slurm's scancel reaches each process from slurmstepd and again through srun: seen
// as "stopping at once on a second signal 15") and escalate with SIGKILL themselves after their
// grace period; the kernel sends a parent-death SIGHUP (seqmesh.launch asks for it with
// PR_SET_PDEATHSIG) again each time the child is handed to another thread of the dying parent.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>

namespace seqmesh::launch {

class StopSignals {
 public:
  StopSignals() {
    received_.store(0);
    count_.store(0);
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
    waiter_ = std::thread([this] {
      while (true) {
        int sig = 0;
        if (sigwait(&set_, &sig) != 0) continue;
        if (done_.load()) return;
        if (count_.load() == 0 || sig == SIGINT) {  // only Ctrl-C escalates
          received_.store(sig);
          count_.fetch_add(1);
        }
        taken_.fetch_add(1);  // last: a reader that sees it sees the signal's effect
      }
    });
  }
  ~StopSignals() {
    done_.store(true);
    pthread_kill(waiter_.native_handle(), SIGTERM);
    waiter_.join();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The last signal taken (0: none).
  static int Received() { return received_.load(); }
  // The first signal and each SIGINT after it: 1 asks a job to stop gracefully, 2 at once.
  static int Count() { return count_.load(); }
  // How many signals the waiter has taken, repeated SIGHUPs included.
  static int Taken() { return taken_.load(); }

 private:
  static inline std::atomic<int> received_{0};
  static inline std::atomic<int> count_{0};
  static inline std::atomic<int> taken_{0};
  sigset_t set_, old_;
  std::atomic<bool> done_{false};
  std::thread waiter_;
};

}  // namespace seqmesh::launch
