// The one check family of seqmesh (STYLE.md rule 5).
//
//   SM_CHECK(q.shape(1) == k.shape(1)) << "q and k differ in head_dim";
//
// A failed check throws seqmesh::Error whose message is the streamed message, prefixed with the
// rank when one is set: one line that says what is wrong and how to fix it. The expression and
// file:line are added with SEQMESH_DEBUG=1 (the debug log), and always for a check without a
// message (an internal invariant). Inside a layer errors propagate as exceptions;
// boundaries (public APIs, threads, RPC handlers, Python) turn them into a Status or an exception
// of their own. Library code never calls exit().
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace seqmesh {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The rank printed in check messages; -1 (the default) prints none. Set once by a worker.
void SetLogRank(int rank);
int LogRank();
// SEQMESH_DEBUG set (and not "0"): check messages carry the expression and file:line.
bool DebugLocations();

namespace detail {

class CheckMessage {
 public:
  CheckMessage(const char* expr, const char* file, int line);
  template <typename T>
  CheckMessage& operator<<(const T& value) {
    detail_ << value;
    return *this;
  }
  std::string Text() const;

 private:
  const char* expr_;
  const char* file_;
  int line_;
  std::ostringstream detail_;
};

// `Thrower() & message` binds after every `<<`, so the whole message is built before the throw.
struct Thrower {
  [[noreturn]] void operator&(const CheckMessage& message) const;
};

}  // namespace detail
}  // namespace seqmesh

#define SM_LIKELY(x) __builtin_expect(!!(x), 1)

#define SM_CHECK(cond)   \
  if (SM_LIKELY(cond)) { \
  } else                 \
    ::seqmesh::detail::Thrower() & ::seqmesh::detail::CheckMessage(#cond, __FILE__, __LINE__)

// Checks an external library's status code; `ok` is its success value.
#define SM_CHECK_STATUS(expr, ok, what)                                                       \
  if (auto sm_status_ = (expr); SM_LIKELY(sm_status_ == (ok))) {                              \
  } else                                                                                      \
    ::seqmesh::detail::Thrower() & ::seqmesh::detail::CheckMessage(#expr, __FILE__, __LINE__) \
                                       << what << " returned status "                         \
                                       << static_cast<int>(sm_status_) << ". "

#define SM_CHECK_DNNL(expr) SM_CHECK_STATUS(expr, dnnl_success, "oneDNN")
