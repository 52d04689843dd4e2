// runtime/trace: the file is a JSON array of trace events (read back with runtime/json), names
// with quotes, backslashes and control bytes escaped, one track per thread named once, async
// events paired by id, nothing written while tracing is off, and one trace per process.
#include "runtime/trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "runtime/json.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::ThrowsWith;

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("seqmesh_trace_" + std::to_string(getpid()) + "_" + name + ".json"))
      .string();
}

std::vector<Json> ReadEvents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return Json::Parse(ss.str(), path).AsArray(path);
}

TEST(TraceTest, WritesAJsonArrayOfEventsWithEscapedNamesAndATrackPerThread) {
  const std::string path = TempPath("events");
  trace::Complete("before open", "x", 1, 1);  // off: nothing
  trace::Open(path, 7, "rank 7 \"quoted\"");
  EXPECT_TRUE(trace::On());
  EXPECT_TRUE(ThrowsWith([&] { trace::Open(path, 8, "again"); }, "is open already"));
  {
    const trace::Scope outer("a \"b\" \\ c\x01", "cat",
                             {trace::Int("n", -3), trace::Str("s", "x\ny")});
    const trace::Scope inner("inner", "cat");
  }
  trace::AsyncBegin("reduce-scatter", "gradients", 42, 100, {trace::Int("bucket", 1)});
  std::thread([] {
    trace::NameThread("comm");
    trace::Complete("on another thread", "cat", 5, 2);
  }).join();
  trace::AsyncEnd("reduce-scatter", "gradients", 42, 150);
  trace::Close();
  EXPECT_FALSE(trace::On());
  trace::Complete("after close", "x", 1, 1);  // off again: nothing

  const std::vector<Json> events = ReadEvents(path);
  std::map<std::string, const Json*> by_name;
  std::map<int64_t, std::string> threads;
  for (const Json& e : events) {
    EXPECT_EQ(e.Require("pid", "event").AsInt("pid"), 7);
    const std::string name = e.Require("name", "event").AsString("name");
    if (name == "thread_name") {
      const int64_t tid = e.Require("tid", "event").AsInt("tid");
      EXPECT_EQ(threads.count(tid), 0u) << "thread " << tid << " named twice";
      threads[tid] = e.Require("args", "event").Require("name", "args").AsString("name");
    }
    by_name[name] = &e;
  }
  EXPECT_EQ(by_name.count("before open") + by_name.count("after close"), 0u);
  ASSERT_TRUE(by_name.count("process_name"));
  EXPECT_EQ(by_name["process_name"]->Require("args", "").Require("name", "").AsString("name"),
            "rank 7 \"quoted\"");
  ASSERT_TRUE(by_name.count("a \"b\" \\ c\x01"));
  const Json& outer = *by_name["a \"b\" \\ c\x01"];
  const Json& inner = *by_name["inner"];
  EXPECT_EQ(outer.Require("ph", "").AsString("ph"), "X");
  EXPECT_EQ(outer.Require("args", "").Require("n", "").AsInt("n"), -3);
  EXPECT_EQ(outer.Require("args", "").Require("s", "").AsString("s"), "x\ny");
  // The inner scope lies inside the outer one, on the same track.
  const int64_t ots = outer.Require("ts", "").AsInt("ts"),
                its = inner.Require("ts", "").AsInt("ts");
  EXPECT_LE(ots, its);
  EXPECT_LE(its + inner.Require("dur", "").AsInt("dur"),
            ots + outer.Require("dur", "").AsInt("dur"));
  EXPECT_EQ(outer.Require("tid", "").AsInt("tid"), inner.Require("tid", "").AsInt("tid"));
  const Json& other = *by_name["on another thread"];
  EXPECT_NE(other.Require("tid", "").AsInt("tid"), outer.Require("tid", "").AsInt("tid"));
  EXPECT_EQ(threads[other.Require("tid", "").AsInt("tid")], "comm");
  EXPECT_EQ(threads[outer.Require("tid", "").AsInt("tid")], "main");
  int async = 0;
  for (const Json& e : events) {
    const std::string ph = e.Require("ph", "").AsString("ph");
    if (ph == "b" || ph == "e") {
      ++async;
      EXPECT_EQ(e.Require("id", "").AsInt("id"), 42);
      EXPECT_EQ(e.Require("ts", "").AsInt("ts"), ph == "b" ? 100 : 150);
    }
  }
  EXPECT_EQ(async, 2);
  std::filesystem::remove(path);
}

TEST(TraceTest, AnUnwritablePathIsRefusedNamingItAndTheKey) {
  EXPECT_TRUE(ThrowsWith([] { trace::Open("/nonexistent/dir/t.json", 0, "x"); },
                         "cannot write '/nonexistent/dir/t.json'"));
  EXPECT_FALSE(trace::On());
  trace::Close();  // nothing open: nothing to do
}

}  // namespace
}  // namespace seqmesh
