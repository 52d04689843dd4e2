// `seqmesh report RUN_DIR [--output DIR]`
//
// What a run did, from what it left in its directory: a summary (steps, tokens, time, throughput,
// losses, restarts, checkpoints) printed and written to DIR/summary.txt, and charts as SVG and
// PNG (launch/plot.h): loss and validation loss against step, tokens/s, and for a job of several
// ranks each rank's step time and the planner's simulated step time against the measured one.
// DIR defaults to RUN_DIR/report.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "launch/command.h"
#include "launch/flags.h"
#include "launch/plot.h"
#include "runtime/check.h"
#include "runtime/json.h"
#include "runtime/manifest.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

constexpr Rgb kBlue{0.12, 0.47, 0.71}, kOrange{1.0, 0.50, 0.05}, kGreen{0.17, 0.63, 0.17},
    kRed{0.84, 0.15, 0.16}, kPurple{0.58, 0.40, 0.74}, kBrown{0.55, 0.34, 0.29},
    kPink{0.89, 0.47, 0.76}, kGray{0.50, 0.50, 0.50};
constexpr Rgb kRankColors[] = {kBlue, kOrange, kGreen, kRed, kPurple, kBrown, kPink, kGray};

double Num(const Json& r, const char* key) {
  const Json* v = r.Find(key);
  return v && v->is_number() ? v->AsDouble(key) : std::nan("");
}

double Median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::vector<Json> ReadRecords(const std::string& path) {
  std::ifstream in(path);
  SM_CHECK(in) << "cannot read '" << path
               << "': is this a run directory (train or launch "
                  "--checkpoint.dir)?";
  std::vector<Json> out;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json r = Json::Parse(line, path + " line " + std::to_string(n));
    if (r.is_object() && r.Find("step")) out.push_back(std::move(r));
  }
  SM_CHECK(!out.empty()) << "'" << path << "' has no step records yet";
  std::stable_sort(out.begin(), out.end(), [](const Json& a, const Json& b) {
    return a.Require("step", "record").AsInt("step") < b.Require("step", "record").AsInt("step");
  });
  return out;
}

Series Of(const std::vector<Json>& records, const char* key, std::string name, Rgb color,
          bool markers = false) {
  Series s{std::move(name), color, {}, markers};
  for (const Json& r : records) {
    const double y = Num(r, key);
    if (markers && !std::isfinite(y)) continue;
    s.points.emplace_back(static_cast<double>(r.Require("step", "record").AsInt("step")), y);
  }
  return s;
}

std::string Fmt(double v, int digits = 4) {
  if (!std::isfinite(v)) return "-";
  std::ostringstream os;
  if (std::abs(v) >= 1000) {
    os << std::fixed << std::setprecision(0) << v;  // tokens/s, ms: whole numbers
    return os.str();
  }
  os.precision(digits);
  os << v;
  return os.str();
}

int Report(const std::string& run_dir, std::string out_dir) {
  const std::string metrics = (fs::path(run_dir) / "metrics.jsonl").string();
  const std::vector<Json> records = ReadRecords(metrics);
  if (out_dir.empty()) out_dir = (fs::path(run_dir) / "report").string();
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  SM_CHECK(!ec) << "cannot make '" << out_dir << "': " << ec.message();

  // The summary.
  std::vector<double> tok_s, step_ms;
  std::set<int64_t> generations;
  double tokens = 0, best_val = std::nan("");
  int64_t best_val_step = 0, skipped = 0;
  size_t world = 1;
  for (const Json& r : records) {
    tok_s.push_back(Num(r, "tok_per_s"));
    step_ms.push_back(Num(r, "step_ms"));
    if (std::isfinite(Num(r, "tokens"))) tokens += Num(r, "tokens");
    if (const Json* g = r.Find("generation")) generations.insert(g->AsInt("generation"));
    if (const Json* ranks = r.Find("rank_step_ms"))
      world = std::max(world, ranks->AsArray("rank_step_ms").size());
    const double v = Num(r, "val_loss");
    if (std::isfinite(v) && !(v >= best_val)) {
      best_val = v;
      best_val_step = r.Require("step", "record").AsInt("step");
    }
    skipped += !std::isfinite(Num(r, "loss"));
  }
  const Json& first = records.front();
  const Json& last = records.back();
  int64_t superseded = 0;
  if (std::ifstream old(metrics + ".superseded"); old) {
    std::string line;
    while (std::getline(old, line)) superseded += !line.empty();
  }
  const auto committed = CommittedStepDirs(run_dir);
  std::ostringstream sum;
  sum << "run: " << fs::absolute(run_dir).lexically_normal().string() << "\n";
  sum << "steps: " << records.size() << " recorded, the last "
      << last.Require("step", "").AsInt("step")
      << (skipped ? " (" + std::to_string(skipped) + " skipped as non-finite)" : "") << "\n";
  if (const Json* t0 = first.Find("time"))
    sum << "time: " << t0->AsString("time") << " to "
        << last.Require("time", "record").AsString("time") << "\n";
  sum << "ranks: " << world << "\n";
  sum << "tokens: " << Fmt(tokens, 12) << "\n";
  sum << "throughput: median " << Fmt(Median(tok_s)) << " tok/s, median step "
      << Fmt(Median(step_ms)) << " ms\n";
  sum << "loss: " << Fmt(Num(first, "loss")) << " at step "
      << first.Require("step", "").AsInt("step") << ", " << Fmt(Num(last, "loss")) << " at step "
      << last.Require("step", "").AsInt("step") << "\n";
  if (std::isfinite(best_val))
    sum << "val_loss: best " << Fmt(best_val) << " at step " << best_val_step << "\n";
  sum << "restarts: " << (generations.empty() ? 0 : generations.size() - 1) << " (" << superseded
      << " redone step record(s) superseded)\n";
  sum << "checkpoints: " << committed.size();
  if (!committed.empty()) sum << ", the newest after step " << committed.front().first;
  sum << "\n";

  // The charts.
  std::vector<std::string> charts;
  auto chart = [&](const Chart& c, const std::string& name) {
    WriteChart(c, (fs::path(out_dir) / name).string());
    charts.push_back(name);
  };
  Chart loss{"Loss", "step", "loss (nats per token)", {Of(records, "loss", "loss", kBlue)}};
  Series val = Of(records, "val_loss", "validation loss", kOrange, true);
  if (!val.points.empty()) loss.series.push_back(val);
  chart(loss, "loss");
  chart({"Throughput", "step", "tokens/s", {Of(records, "tok_per_s", "tokens/s", kGreen)}},
        "throughput");
  if (world > 1) {
    Chart ranks{"Step time per rank", "step", "ms", {}};
    for (size_t k = 0; k < world; ++k) {
      Series s{"rank " + std::to_string(k), kRankColors[k % 8], {}, false, 1.5};
      if (k >= 8) s.name.clear();  // a legend of 8 entries at most
      for (const Json& r : records) {
        const Json* a = r.Find("rank_step_ms");
        const double y = a && a->AsArray("").size() > k && a->AsArray("")[k].is_number()
                             ? a->AsArray("")[k].AsDouble("rank_step_ms")
                             : std::nan("");
        s.points.emplace_back(static_cast<double>(r.Require("step", "").AsInt("step")), y);
      }
      ranks.series.push_back(std::move(s));
    }
    chart(ranks, "rank_step_time");
    Chart sim{"Simulated against measured step time",
              "step",
              "ms",
              {Of(records, "step_ms", "measured", kBlue),
               Of(records, "estimated_step_ms", "simulated (cost model)", kOrange),
               Of(records, "predicted_step_ms", "predicted (refit)", kGreen)}};
    chart(sim, "simulated_step_time");
  }
  sum << "charts: ";
  for (size_t i = 0; i < charts.size(); ++i) sum << (i ? ", " : "") << charts[i] << ".svg/.png";
  sum << " in " << out_dir << "\n";
  {
    std::ofstream f(fs::path(out_dir) / "summary.txt");
    f << sum.str();
    SM_CHECK(f.good()) << "cannot write '" << (fs::path(out_dir) / "summary.txt").string() << "'";
  }
  std::cout << sum.str();
  return 0;
}

}  // namespace

int RunReport(const Args& args) {
  std::vector<std::string> positional;
  std::string output;
  FlagParser flags("report", "summarize a run and chart it (SVG and PNG)",
                   "seqmesh report runs/demo");
  flags.Positional("RUN_DIR", &positional, "the run directory (checkpoint.dir)", Required::kYes)
      .String("--output", "DIR", &output, "where the summary and charts go (RUN_DIR/report)");
  if (!flags.Parse(args)) return 0;
  SM_CHECK(positional.size() == 1) << "usage: seqmesh report RUN_DIR [--output DIR]";
  return Report(positional[0], output);
}

}  // namespace seqmesh::launch
