// Per-process traces in the Chrome / Perfetto JSON trace event format (the "JSON Array Format" of
// Google's Trace Event Format document): one file per rank, the rank as the process, a track per
// thread, complete events ("X") for what a step did and async events ("b"/"e") for work that
// overlaps the thread's own (gradient reductions in flight). Off until Open(); each call then
// costs a relaxed atomic load, so the hot paths keep their TraceScope in release builds.
//
// Times are microseconds of the system clock, so the files of every rank of a job share one
// timeline (`seqmesh trace merge` shifts them to start at 0). The file is valid JSON once Close()
// writes its closing ']'; a rank that dies before leaves it open, which the format allows (the
// merge reads both). Events are buffered and written by Flush() (each step) and Close().
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace seqmesh::trace {

// Starts tracing this process into `path` (truncated) as process `pid` named `process_name`
// (e.g. "rank 3 (host, pid 1234)"). Throws seqmesh::Error naming the file when it cannot be
// written. One trace per process at a time.
void Open(const std::string& path, int pid, const std::string& process_name);
// Writes what is buffered and the closing ']'; tracing is off afterwards. Safe without Open().
void Close();
// Writes what is buffered (the file stays open).
void Flush();
// Whether a trace is open in this process.
bool IsOpen();

namespace detail {
inline std::atomic<bool> on{false};
}  // namespace detail
inline bool On() { return detail::on.load(std::memory_order_relaxed); }

// Microseconds of the system clock (the trace's timestamps).
int64_t NowUs();
// Names the calling thread's track ("main" by default for the first thread that traces).
void NameThread(const std::string& name);

// One argument of an event: a key and a JSON value written as is (a number, or a quoted string
// from Quote()).
struct Arg {
  std::string_view key;
  std::string value;
};
std::string Quote(std::string_view s);
inline Arg Int(std::string_view key, int64_t v) { return {key, std::to_string(v)}; }
inline Arg Str(std::string_view key, std::string_view v) { return {key, Quote(v)}; }

// A complete event on the calling thread's track. Events of one thread must nest.
void Complete(std::string_view name, std::string_view category, int64_t start_us, int64_t dur_us,
              std::initializer_list<Arg> args = {});
// Begin and end of an async event (its own track, keyed by category and id): may overlap anything.
void AsyncBegin(std::string_view name, std::string_view category, uint64_t id, int64_t ts_us,
                std::initializer_list<Arg> args = {});
void AsyncEnd(std::string_view name, std::string_view category, uint64_t id, int64_t ts_us);

// `,"args":{...}` of an event ("" without args).
std::string ArgsJson(std::initializer_list<Arg> args);

// A complete event from construction to destruction (nothing when tracing is off).
class Scope {
 public:
  Scope(std::string_view name, std::string_view category, std::initializer_list<Arg> args = {})
      : on_(On()) {
    if (!on_) return;
    name_ = name;
    category_ = category;
    args_ = ArgsJson(args);
    start_ = NowUs();
  }
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool on_;
  std::string name_, category_, args_;
  int64_t start_ = 0;
};

}  // namespace seqmesh::trace
