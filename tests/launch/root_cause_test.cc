// The root-cause line of a failed attempt (launch/root_cause.h, issue 13 item 1): whatever order
// the survivors exit in, it names the rank the coordinator declared dead, or else the first rank
// killed by a signal, and a non-zero exit only when nothing else is known.
#include "launch/root_cause.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace seqmesh::launch {
namespace {

std::string ExitBlock(int rank, int code) {
  return "--------------------------------------------------------------------------\n"
         "mpirun detected that one or more processes exited with non-zero status, thus causing\n"
         "the job to be terminated. The first process to do so was:\n\n"
         "  Process name: [[4242,1]," +
         std::to_string(rank) + "]\n  Exit code:    " + std::to_string(code) +
         "\n--------------------------------------------------------------------------\n";
}

std::string SignalLine(int rank, int pid, int signal, const std::string& name) {
  return "mpirun noticed that process rank " + std::to_string(rank) + " with PID " +
         std::to_string(pid) + " on node vm exited on signal " + std::to_string(signal) + " (" +
         name + ").\n";
}

const std::string kVerdict =
    "coordinator: rank 3 (pid 777 on host vm) declared dead after 30.5 s without a heartbeat at "
    "step 5\n";

// A hung rank 3: the survivors 0..2 fail on their deadlines (exit 1) or are stopped by the
// launcher (SIGTERM), in any order, and mpirun reports whichever came first.
TEST(RootCause, AHangNamesTheRankTheCoordinatorDeclaredDeadInEveryExitOrder) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::string> reports;
    for (int r : {0, 1, 2}) {
      if (rng() % 2)
        reports.push_back(ExitBlock(r, 1));
      else
        reports.push_back(SignalLine(r, 1000 + r, 15, "Terminated"));
    }
    std::shuffle(reports.begin(), reports.end(), rng);
    std::string mpirun;
    for (const std::string& s : reports) mpirun += s;
    EXPECT_EQ(RootCause(mpirun, "coordinator: step 4 ...\n" + kVerdict),
              "rank 3 (pid 777 on host vm) declared dead after 30.5 s without a heartbeat at "
              "step 5")
        << mpirun;
  }
}

// kill -9 of rank 2: the first rank killed by a signal, whatever the others did and in whatever
// order; the coordinator's verdict on the same rank adds nothing; on another rank, with no times
// to tell which came first, it wins.
TEST(RootCause, AKilledRankIsNamedWithItsSignalWhateverTheSurvivorsDid) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::string> reports = {SignalLine(2, 4321, 9, "Killed"), ExitBlock(0, 1),
                                        SignalLine(1, 1001, 15, "Terminated")};
    std::shuffle(reports.begin(), reports.end(), rng);
    std::string mpirun;
    for (const std::string& s : reports) mpirun += s;
    const std::string want = "worker rank 2 (pid 4321 on vm) was killed by signal 9 (Killed)";
    EXPECT_EQ(RootCause(mpirun, ""), want) << mpirun;
    EXPECT_EQ(RootCause(mpirun,
                        "coordinator: rank 2 (pid 4321 on host vm) declared dead after 3.1 s "
                        "without a heartbeat at step 2\n"),
              want)
        << mpirun;
  }
  EXPECT_EQ(RootCause(SignalLine(2, 4321, 9, "Killed"), kVerdict),
            "rank 3 (pid 777 on host vm) declared dead after 30.5 s without a heartbeat at step 5");
}

// With arrival times (what the launcher has): whichever came first of the kill and the verdict.
// kill -9 of rank 2, after which mpirun aborts the others slowly enough that the coordinator
// declares a silent survivor dead (seen in the end-to-end test): the kill is the cause.
TEST(RootCause, AKillReportedBeforeAVerdictOnAnotherRankIsTheCause) {
  std::mt19937 rng(13);
  const std::string kill =
      "mpirun noticed that process rank 2 with PID 0 on node vm exited on "
      "signal 9 (Killed).";
  const std::string verdict =
      "coordinator: rank 0 (pid 31 on host vm) declared dead after 5.4 s without a heartbeat at "
      "step 5";
  for (int trial = 0; trial < 50; ++trial) {
    const double t_kill = 10 + static_cast<double>(rng() % 100) / 10;
    const double t_verdict = t_kill + 0.5 + static_cast<double>(rng() % 60) / 10;
    std::vector<StderrLine> mpirun = {{t_kill - 1,
                                       "Primary job  terminated normally, but 1 "
                                       "process returned"},
                                      {t_kill, kill}};
    // The survivors' own reports come after, in any order.
    std::vector<StderrLine> after = {{t_kill + 0.1, "  Process name: [[4242,1],1]"},
                                     {t_kill + 0.1, "  Exit code:    1"}};
    if (rng() % 2) std::swap(mpirun[0], mpirun[1]);
    mpirun.insert(mpirun.end(), after.begin(), after.end());
    const std::vector<StderrLine> coordinator = {{t_kill - 2, "coordinator: step 5 ..."},
                                                 {t_verdict, verdict}};
    EXPECT_EQ(RootCause(mpirun, coordinator),
              "worker rank 2 (on vm) was killed by signal 9 (Killed)")
        << trial;
    // The other way round (a hang, then a kill of another rank): the verdict.
    std::vector<StderrLine> late = {{t_verdict + 1, kill}};
    EXPECT_EQ(RootCause(late, coordinator),
              "rank 0 (pid 31 on host vm) declared dead after 5.4 s without a heartbeat at step 5");
  }
  // The launcher's own stop (SIGTERM) before a verdict is no cause.
  EXPECT_EQ(RootCause({{1, SignalLine(1, 8, 15, "Terminated")}}, {{2, kVerdict}}),
            kVerdict.substr(13, kVerdict.size() - 14));
}

TEST(RootCause, ANonZeroExitOnlyWhenNothingElseIsKnown) {
  EXPECT_EQ(RootCause(ExitBlock(1, 3), ""), "worker rank 1 exited with code 3");
  EXPECT_EQ(RootCause(SignalLine(0, 5, 15, "Terminated") + ExitBlock(1, 3), ""),
            "worker rank 1 exited with code 3");
  EXPECT_EQ(RootCause(SignalLine(0, 0, 11, "Segmentation fault"), ""),
            "worker rank 0 (on vm) was killed by signal 11 (Segmentation fault)");
  EXPECT_EQ(RootCause("", "coordinator: rank 1 never registered: 30.0 s after rank 0 did\n"),
            "rank 1 never registered: 30.0 s after rank 0 did");
  EXPECT_EQ(RootCause("nothing useful", "either"), "");
  // The coordinator failed the job itself: its reason, not the first worker that left on it.
  EXPECT_EQ(RootCause(ExitBlock(0, 1),
                      "coordinator: all 2 ranks registered\ncoordinator: job failed: cannot plan "
                      "step 0: sequence 55 needs 4 ranks\n"),
            "cannot plan step 0: sequence 55 needs 4 ranks");
}

}  // namespace
}  // namespace seqmesh::launch
