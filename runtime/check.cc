#include "runtime/check.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace seqmesh {
namespace {
std::atomic<int> g_log_rank{-1};
}  // namespace

void SetLogRank(int rank) { g_log_rank.store(rank); }
int LogRank() { return g_log_rank.load(); }

bool DebugLocations() {
  static const bool on = [] {
    const char* v = std::getenv("SEQMESH_DEBUG");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

namespace detail {

CheckMessage::CheckMessage(const char* expr, const char* file, int line)
    : expr_(expr), file_(file), line_(line) {}

std::string CheckMessage::Text() const {
  std::ostringstream os;
  int rank = LogRank();
  if (rank >= 0) os << "[rank " << rank << "] ";
  const std::string detail = detail_.str();
  // A check with a message is an error the user can act on: the message alone, one line. One
  // without a message is an internal invariant: the expression and location are all there is.
  if (detail.empty()) {
    os << "internal error: check `" << expr_ << "` failed at " << file_ << ":" << line_;
  } else {
    os << detail;
    if (DebugLocations())
      os << " (check `" << expr_ << "` failed at " << file_ << ":" << line_ << ")";
  }
  return os.str();
}

void Thrower::operator&(const CheckMessage& message) const { throw Error(message.Text()); }

}  // namespace detail
}  // namespace seqmesh
