#include "runtime/trace.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "runtime/check.h"

namespace seqmesh::trace {
namespace {

struct State {
  std::mutex mu;
  std::FILE* file = nullptr;
  std::string path;
  std::string buffer;  // events not yet written
  int pid = 0;
  bool first = true;  // no event written yet (the next has no leading comma)
  int next_tid = 0;
  uint64_t generation = 0;  // bumped by Open: a thread's id of an earlier trace is stale
};
State& state() {
  static State* s = new State;  // never destroyed: threads may trace during exit
  return *s;
}

struct ThreadTrack {
  int tid = -1;
  uint64_t generation = 0;
  std::string name;
};
thread_local ThreadTrack track;

void FlushLocked(State& s) {
  if (!s.file || s.buffer.empty()) return;
  std::fwrite(s.buffer.data(), 1, s.buffer.size(), s.file);
  std::fflush(s.file);
  s.buffer.clear();
}

void Append(State& s, const std::string& event) {
  if (!s.first) s.buffer += ",\n";
  s.first = false;
  s.buffer += event;
  if (s.buffer.size() > (1 << 20)) FlushLocked(s);  // never more than ~1 MiB held
}

// The calling thread's track id in the current trace; names it on first use. Holds s.mu.
int TidLocked(State& s) {
  if (track.tid < 0 || track.generation != s.generation) {
    track.tid = s.next_tid++;
    track.generation = s.generation;
    const std::string name =
        !track.name.empty() ? track.name
                            : (track.tid == 0 ? "main" : "thread " + std::to_string(track.tid));
    Append(s, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":" + std::to_string(s.pid) +
                  ",\"tid\":" + std::to_string(track.tid) + ",\"args\":{\"name\":" + Quote(name) +
                  "}}");
  }
  return track.tid;
}

std::string Head(State& s, std::string_view name, std::string_view category, char ph, int64_t ts) {
  return "{\"name\":" + Quote(name) + ",\"cat\":" + Quote(category) + ",\"ph\":\"" + ph +
         "\",\"pid\":" + std::to_string(s.pid) + ",\"tid\":" + std::to_string(TidLocked(s)) +
         ",\"ts\":" + std::to_string(ts);
}

}  // namespace

std::string ArgsJson(std::initializer_list<Arg> args) {
  if (args.size() == 0) return "";
  std::string e = ",\"args\":{";
  bool first = true;
  for (const Arg& a : args) {
    if (!first) e += ',';
    first = false;
    e += Quote(a.key) + ":" + a.value;
  }
  return e + "}";
}

std::string Quote(std::string_view in) {
  std::string out = "\"";
  for (const char ch : in) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char u[8];
      std::snprintf(u, sizeof u, "\\u%04x", c);
      out += u;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Open(const std::string& path, int pid, const std::string& process_name) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  SM_CHECK(!s.file) << "trace: '" << s.path << "' is open already (one trace per process)";
  s.file = std::fopen(path.c_str(), "w");
  SM_CHECK(s.file) << "trace: cannot write '" << path << "': " << std::strerror(errno)
                   << " (metrics.trace = false turns traces off)";
  s.path = path;
  s.pid = pid;
  s.next_tid = 0;
  ++s.generation;
  s.buffer = "[\n";
  s.first = true;
  Append(s, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":" + std::to_string(pid) +
                ",\"tid\":0,\"args\":{\"name\":" + Quote(process_name) + "}}");
  Append(s, "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":" + std::to_string(pid) +
                ",\"tid\":0,\"args\":{\"sort_index\":" + std::to_string(pid) + "}}");
  detail::on.store(true);
}

void Flush() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  FlushLocked(s);
}

void Close() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.file) return;
  detail::on.store(false);
  s.buffer += "\n]\n";
  std::fwrite(s.buffer.data(), 1, s.buffer.size(), s.file);
  std::fclose(s.file);
  s.buffer.clear();
  s.file = nullptr;
}

bool IsOpen() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.file != nullptr;
}

void NameThread(const std::string& name) { track.name = name; }

void Complete(std::string_view name, std::string_view category, int64_t start_us, int64_t dur_us,
              std::initializer_list<Arg> args) {
  if (!On()) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.file) return;
  std::string e = Head(s, name, category, 'X', start_us);
  e += ",\"dur\":" + std::to_string(dur_us < 0 ? 0 : dur_us);
  e += ArgsJson(args);
  Append(s, e + "}");
}

void AsyncBegin(std::string_view name, std::string_view category, uint64_t id, int64_t ts_us,
                std::initializer_list<Arg> args) {
  if (!On()) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.file) return;
  std::string e = Head(s, name, category, 'b', ts_us) + ",\"id\":" + std::to_string(id);
  e += ArgsJson(args);
  Append(s, e + "}");
}

void AsyncEnd(std::string_view name, std::string_view category, uint64_t id, int64_t ts_us) {
  if (!On()) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.file) return;
  Append(s, Head(s, name, category, 'e', ts_us) + ",\"id\":" + std::to_string(id) + "}");
}

Scope::~Scope() {
  if (!on_ || !On()) return;
  const int64_t end = NowUs();
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.file) return;
  std::string e = Head(s, name_, category_, 'X', start_);
  e += ",\"dur\":" + std::to_string(end - start_) + args_;
  Append(s, e + "}");
}

}  // namespace seqmesh::trace
