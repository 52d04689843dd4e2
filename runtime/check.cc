#include "runtime/check.h"

#include <atomic>

namespace seqmesh {
namespace {
std::atomic<int> g_log_rank{-1};
}  // namespace

void SetLogRank(int rank) { g_log_rank.store(rank); }
int LogRank() { return g_log_rank.load(); }

namespace detail {

CheckMessage::CheckMessage(const char* expr, const char* file, int line)
    : expr_(expr), file_(file), line_(line) {}

std::string CheckMessage::Text() const {
  std::ostringstream os;
  int rank = LogRank();
  if (rank >= 0) os << "[rank " << rank << "] ";
  std::string detail = detail_.str();
  os << (detail.empty() ? std::string("check failed") : detail) << " (check `" << expr_
     << "` failed at " << file_ << ":" << line_ << ")";
  return os.str();
}

void Thrower::operator&(const CheckMessage& message) const { throw Error(message.Text()); }

}  // namespace detail
}  // namespace seqmesh
