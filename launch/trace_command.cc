// `seqmesh trace merge RUN_DIR [--output FILE]`
//
// Puts the traces every rank of a run wrote (<RUN_DIR>/trace/rank-*.json, runtime/trace.h) on one
// timeline: one JSON trace (the Trace Event Format's object form) with every event, times shifted
// so the run's first event is at 0, each rank its own process. A file a killed rank left without
// its closing ']' (or cut inside an event) is read up to its last complete event. Open the
// result in https://ui.perfetto.dev or chrome://tracing.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "launch/command.h"
#include "launch/flags.h"
#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/json.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

// The events of one rank's file, complete or cut short.
std::vector<Json> ReadTraceEvents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SM_CHECK(in) << "cannot read the trace '" << path << "'";
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  const size_t end = text.find_last_not_of(" \t\r\n");
  if (end != std::string::npos && text[end] == ']') return Json::Parse(text, path).AsArray(path);
  // No closing ']': the rank stopped while writing. Events are separated by ",\n" (trace.h).
  while (true) {
    try {
      return Json::Parse(text + "\n]", path).AsArray(path);
    } catch (const Error&) {
      const size_t cut = text.rfind(",\n{");
      SM_CHECK(cut != std::string::npos && text.rfind('[', 0) == 0)
          << "'" << path << "' is not a seqmesh trace (a JSON array of trace events)";
      text.resize(cut);
    }
  }
}

int Merge(const std::string& run_dir, std::string output) {
  fs::path dir = fs::path(run_dir) / "trace";
  if (!fs::is_directory(dir)) dir = run_dir;  // the trace directory itself
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("rank-", 0) == 0 && e.path().extension() == ".json") files.push_back(e.path());
  }
  SM_CHECK(!files.empty()) << "no rank traces (rank-*.json) in '" << (fs::path(run_dir) / "trace")
                           << "': the run wrote none (metrics.trace = false?) or this is not a "
                              "run directory";
  std::sort(files.begin(), files.end());
  std::vector<Json> events;
  for (const std::string& f : files)
    for (Json& e : ReadTraceEvents(f)) events.push_back(std::move(e));
  // The time origin: the first timed event of any rank.
  int64_t origin = INT64_MAX;
  for (const Json& e : events)
    if (const Json* ts = e.Find("ts")) origin = std::min(origin, ts->AsInt("ts"));
  if (origin == INT64_MAX) origin = 0;
  std::set<std::string> named;  // one process and thread name per track (restarts repeat them)
  Json merged = Json::Array();
  for (const Json& e : events) {
    const Json* ph = e.Find("ph");
    if (ph && ph->AsString("ph") == "M") {
      std::string key = e.Require("name", "a metadata event").AsString("name");
      for (const char* k : {"pid", "tid"})
        if (const Json* v = e.Find(k)) key += "/" + std::to_string(v->AsInt(k));
      if (!named.insert(key).second) continue;
      merged.Push(e);
      continue;
    }
    Json copy = Json::Object();
    for (const auto& [k, v] : e.AsObject("an event"))
      copy.Set(k, k == "ts" ? Json::Integer(v.AsInt("ts") - origin) : v);
    merged.Push(std::move(copy));
  }
  Json files_json = Json::Array();
  for (const std::string& f : files) files_json.Push(Json::String(f));
  Json other = Json::Object();
  other.Set("run_dir", Json::String(run_dir));
  other.Set("time_origin_unix_us", Json::Integer(origin));
  other.Set("files", std::move(files_json));
  Json doc = Json::Object();
  doc.Set("traceEvents", std::move(merged));
  doc.Set("displayTimeUnit", Json::String("ms"));
  doc.Set("otherData", std::move(other));
  if (output.empty()) output = (dir / "merged.json").string();
  const std::string text = doc.Dump() + "\n";
  WriteFileAtomically(output, text.data(), text.size());
  std::cout << "trace: " << files.size() << " file(s), " << events.size() << " events -> " << output
            << " (open it in https://ui.perfetto.dev)\n";
  return 0;
}

}  // namespace

int RunTraceCommand(const Args& args) {
  std::vector<std::string> positional;
  std::string output;
  FlagParser flags("trace", "put the ranks' traces of a run on one timeline",
                   "seqmesh trace merge runs/demo");
  flags.Positional("merge RUN_DIR", &positional, "the subcommand and the run directory")
      .String("--output", "FILE", &output, "the merged trace (default RUN_DIR/trace/merged.json)");
  if (!flags.Parse(args)) return 0;
  SM_CHECK(positional.size() == 2 && positional[0] == "merge")
      << "usage: seqmesh trace merge RUN_DIR [--output FILE]";
  return Merge(positional[1], output);
}

}  // namespace seqmesh::launch
