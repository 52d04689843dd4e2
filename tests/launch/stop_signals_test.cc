// StopSignals: the first SIGINT/SIGTERM/SIGHUP asks for the graceful stop, a SIGINT after it for
// the stop at once; a repeated SIGTERM (Slurm's scancel delivers two) or SIGHUP (a parent-death
// signal, which the kernel can deliver more than once for one death) never counts as the second.
#include "launch/stop_signals.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace seqmesh::launch {
namespace {

// Sends `sig` to this process and waits until the waiter thread has taken it (or 10 s).
void SendAndSettle(int sig) {
  const int before = StopSignals::Taken();
  ASSERT_EQ(kill(getpid(), sig), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (StopSignals::Taken() == before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_GT(StopSignals::Taken(), before) << "signal " << sig << " was not taken";
}

TEST(StopSignals, RepeatedSighupIsOneGracefulStop) {
  StopSignals signals;
  EXPECT_EQ(StopSignals::Count(), 0);
  SendAndSettle(SIGHUP);
  EXPECT_EQ(StopSignals::Received(), SIGHUP);
  EXPECT_EQ(StopSignals::Count(), 1);
  SendAndSettle(SIGHUP);
  SendAndSettle(SIGHUP);
  EXPECT_EQ(StopSignals::Count(), 1) << "a repeated SIGHUP must not stop at once";
}

TEST(StopSignals, RepeatedSigtermIsOneGracefulStopAndSigintAfterItTheStopAtOnce) {
  StopSignals signals;
  SendAndSettle(SIGTERM);
  SendAndSettle(SIGTERM);
  SendAndSettle(SIGHUP);
  EXPECT_EQ(StopSignals::Count(), 1) << "scancel's two SIGTERMs must not stop at once";
  EXPECT_EQ(StopSignals::Received(), SIGTERM);
  SendAndSettle(SIGINT);
  EXPECT_EQ(StopSignals::Count(), 2);
  EXPECT_EQ(StopSignals::Received(), SIGINT);
}

TEST(StopSignals, SecondSigintIsTheStopAtOnceAndSighupThenChangesNothing) {
  StopSignals signals;
  SendAndSettle(SIGINT);
  EXPECT_EQ(StopSignals::Count(), 1);
  SendAndSettle(SIGHUP);
  EXPECT_EQ(StopSignals::Count(), 1);
  EXPECT_EQ(StopSignals::Received(), SIGINT);
  SendAndSettle(SIGINT);
  EXPECT_EQ(StopSignals::Count(), 2);
}

}  // namespace
}  // namespace seqmesh::launch
