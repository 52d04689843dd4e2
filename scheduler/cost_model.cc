#include "scheduler/cost_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/check.h"

namespace seqmesh::scheduler {
namespace {

// Least squares over the columns s^p for p in `powers`, each scaled by the largest s for
// conditioning; with `relative`, each residual is divided by its sample's value (weighted least
// squares with weights 1 / y). Returns the coefficients of s^2, s^1, s^0 (0 for a power not
// fitted) and the minimized sum of squared (weighted) residuals.
std::pair<std::array<double, 3>, double> FitPowers(const std::vector<ComputeSample>& samples,
                                                   const std::vector<int>& powers, bool relative) {
  double scale = 0;
  for (const auto& p : samples) scale = std::max(scale, std::fabs(p.tokens));
  SM_CHECK(scale > 0) << "least squares: all sample lengths are zero";
  auto weight = [&](const ComputeSample& p) { return relative ? 1.0 / p.ms : 1.0; };
  const size_t n = powers.size();
  std::vector<std::vector<double>> m(n, std::vector<double>(n + 1, 0.0));  // [A^T A | A^T y]
  for (const auto& p : samples) {
    const double u = p.tokens / scale, w = weight(p);
    for (size_t i = 0; i < n; ++i) {
      const double ai = w * std::pow(u, powers[i]);
      m[i][n] += ai * w * p.ms;
      for (size_t j = 0; j < n; ++j) m[i][j] += ai * w * std::pow(u, powers[j]);
    }
  }
  // Gaussian elimination with partial pivoting.
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t r = col + 1; r < n; ++r)
      if (std::fabs(m[r][col]) > std::fabs(m[pivot][col])) pivot = r;
    SM_CHECK(std::fabs(m[pivot][col]) > 1e-300) << "least squares: singular system";
    std::swap(m[col], m[pivot]);
    for (size_t r = 0; r < n; ++r) {
      if (r == col) continue;
      const double f = m[r][col] / m[col][col];
      for (size_t c = col; c <= n; ++c) m[r][c] -= f * m[col][c];
    }
  }
  std::array<double, 3> x{};  // x[2 - p] is the coefficient of s^p
  for (size_t i = 0; i < n; ++i) x[2 - powers[i]] = m[i][n] / m[i][i] / std::pow(scale, powers[i]);
  double sse = 0;
  for (const auto& p : samples) {
    const double r = weight(p) * (x[0] * p.tokens * p.tokens + x[1] * p.tokens + x[2] - p.ms);
    sse += r * r;
  }
  return {x, sse};
}

int DistinctLengths(const std::vector<ComputeSample>& samples) {
  std::map<double, int> seen;
  for (const auto& p : samples) seen[p.tokens]++;
  return static_cast<int>(seen.size());
}

}  // namespace

CostModel ParseCostModel(const std::string& text, const std::string& source) {
  CostModel m;
  std::map<std::string, double*> numbers = {{"a1", &m.a1},
                                            {"b1", &m.b1},
                                            {"g", &m.g},
                                            {"a2", &m.a2},
                                            {"b2", &m.b2},
                                            {"kv_bytes_per_token", &m.kv_bytes_per_token},
                                            {"p2p_gbps", &m.p2p_gbps},
                                            {"d2h_gbps", &m.d2h_gbps},
                                            {"h2d_gbps", &m.h2d_gbps},
                                            {"ssd_write_gbps", &m.ssd_write_gbps},
                                            {"ssd_read_gbps", &m.ssd_read_gbps},
                                            {"head_ms_per_token", &m.head_ms_per_token},
                                            {"step_fixed_ms", &m.step_fixed_ms}};
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  std::set<std::string> seen_pass;
  while (std::getline(in, line)) {
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string key, value, extra;
    if (!(fields >> key)) continue;
    SM_CHECK(fields >> value) << source << ":" << line_no << ": key '" << key << "' has no value";
    SM_CHECK(!(fields >> extra)) << source << ":" << line_no << ": more than one value";
    if (key == "name") {
      m.name = value;
      continue;
    }
    if (key == "machine_cpu" || key == "machine_isa" || key == "machine_gpu") {
      (key == "machine_cpu"   ? m.machine.cpu
       : key == "machine_isa" ? m.machine.isa
                              : m.machine.gpu) = value;
      continue;
    }
    char* end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    SM_CHECK(end && *end == '\0' && std::isfinite(v))
        << source << ":" << line_no << ": '" << value << "' is not a number";
    if (key == "machine_threads" || key == "machine_ranks") {
      SM_CHECK(v >= 0 && v <= 1 << 20 && v == std::floor(v))
          << source << ":" << line_no << ": " << key << " must be a non-negative integer";
      (key == "machine_threads" ? m.machine.threads : m.machine.ranks) = static_cast<int>(v);
      continue;
    }
    if (key == "layers_per_rank") {
      SM_CHECK(v >= 1 && v == std::floor(v))
          << source << ":" << line_no << ": layers_per_rank must be a positive integer";
      m.layers_per_rank = static_cast<int>(v);
      continue;
    }
    // Keys per ring size D >= 1: the pass calibrations and the refit factors.
    static constexpr std::string_view kRingKeys[] = {
        "pass_factor_", "pass_ms_", "contended_factor_", "contended_ms_", "scale_"};
    const auto ring_key = std::find_if(std::begin(kRingKeys), std::end(kRingKeys),
                                       [&](std::string_view p) { return key.rfind(p, 0) == 0; });
    if (ring_key != std::end(kRingKeys)) {
      const std::string_view prefix = *ring_key;
      const std::string d = key.substr(prefix.size());
      SM_CHECK(!d.empty() && d.size() < 6 &&
               d.find_first_not_of("0123456789") == std::string::npos && std::stoi(d) >= 1)
          << source << ":" << line_no << ": '" << key << "': expected " << prefix << "<D>, D >= 1";
      const bool positive = prefix.find("_ms_") == std::string_view::npos;  // factors, scales
      SM_CHECK(positive ? v > 0 : v >= 0) << source << ":" << line_no << ": " << key
                                          << (positive ? " must be > 0" : " must be >= 0");
      SM_CHECK(!seen_pass.count(key)) << source << ":" << line_no << ": " << key << " given twice";
      seen_pass.insert(key);
      const int ring_size = std::stoi(d);
      if (prefix == "scale_") {
        m.scale[ring_size] = v;
      } else {
        CostModel::PassCalibration& c =
            (prefix.rfind("contended_", 0) == 0 ? m.contended_pass : m.pass)[ring_size];
        (positive ? c.factor : c.ms) = v;
      }
      continue;
    }
    auto it = numbers.find(key);
    SM_CHECK(it != numbers.end()) << source << ":" << line_no << ": unknown key '" << key << "'";
    *it->second = v;
  }
  SM_CHECK(m.a1 >= 0 && m.b1 >= 0 && m.g >= 0) << source << ": T(s) coefficients must be >= 0";
  SM_CHECK(m.a1 > 0 || m.b1 > 0) << source << ": T(s) is zero (set a1 or b1)";
  SM_CHECK(m.p2p_gbps > 0 && m.d2h_gbps > 0 && m.h2d_gbps > 0)
      << source << ": bandwidths must be > 0";
  SM_CHECK(m.ssd_write_gbps >= 0 && m.ssd_read_gbps >= 0)
      << source << ": ssd_write_gbps and ssd_read_gbps must be >= 0 (0: not profiled)";
  SM_CHECK(m.kv_bytes_per_token >= 0 && m.a2 >= 0 && m.b2 >= 0)
      << source << ": byte counts must be >= 0";
  SM_CHECK(m.head_ms_per_token >= 0 && m.step_fixed_ms >= 0)
      << source << ": head_ms_per_token and step_fixed_ms must be >= 0";
  return m;
}

CostModel LoadCostModel(const std::string& path) {
  std::ifstream in(path);
  SM_CHECK(in.good()) << "cannot open cost file '" << path << "'";
  std::stringstream text;
  text << in.rdbuf();
  return ParseCostModel(text.str(), path);
}

std::string FormatCostModel(const CostModel& m) {
  std::ostringstream os;
  os.precision(10);
  os << "name " << m.name << "\nlayers_per_rank " << m.layers_per_rank << "\na1 " << m.a1 << "\nb1 "
     << m.b1 << "\ng " << m.g << "\na2 " << m.a2 << "\nb2 " << m.b2 << "\nkv_bytes_per_token "
     << m.kv_bytes_per_token << "\np2p_gbps " << m.p2p_gbps << "\nd2h_gbps " << m.d2h_gbps
     << "\nh2d_gbps " << m.h2d_gbps << "\n";
  // Written only when profiled, so cost files without them read back unchanged.
  if (m.head_ms_per_token > 0) os << "head_ms_per_token " << m.head_ms_per_token << "\n";
  if (m.step_fixed_ms > 0) os << "step_fixed_ms " << m.step_fixed_ms << "\n";
  if (m.ssd_write_gbps > 0) os << "ssd_write_gbps " << m.ssd_write_gbps << "\n";
  if (m.ssd_read_gbps > 0) os << "ssd_read_gbps " << m.ssd_read_gbps << "\n";
  for (const auto& [d, c] : m.pass)
    os << "pass_factor_" << d << " " << c.factor << "\npass_ms_" << d << " " << c.ms << "\n";
  for (const auto& [d, c] : m.contended_pass)
    os << "contended_factor_" << d << " " << c.factor << "\ncontended_ms_" << d << " " << c.ms
       << "\n";
  for (const auto& [d, k] : m.scale) os << "scale_" << d << " " << k << "\n";
  if (m.machine.known())
    os << "machine_cpu " << m.machine.cpu << "\nmachine_isa " << m.machine.isa << "\nmachine_gpu "
       << (m.machine.gpu.empty() ? "none" : m.machine.gpu) << "\nmachine_threads "
       << m.machine.threads << "\nmachine_ranks " << m.machine.ranks << "\n";
  return os.str();
}

std::string MachineInfo::Describe() const {
  std::ostringstream os;
  os << cpu << " (" << (isa.empty() ? "?" : isa) << ", " << threads << " thread(s) per rank, "
     << std::max(1, ranks) << " rank(s), gpu " << (gpu.empty() ? "none" : gpu) << ")";
  return os.str();
}

std::string MachineMismatch(const MachineInfo& file, const MachineInfo& here) {
  if (!file.known()) return "";
  MachineInfo a = file, b = here;
  if (a.gpu.empty()) a.gpu = "none";
  if (b.gpu.empty()) b.gpu = "none";
  a.ranks = std::max(1, a.ranks);
  b.ranks = std::max(1, b.ranks);
  if (a == b) return "";
  return "it was profiled on " + a.Describe() + ", this is " + b.Describe();
}

void FitCompute(const std::vector<ComputeSample>& samples, CostModel& model, FitError error) {
  SM_CHECK(DistinctLengths(samples) >= 3) << "FitCompute needs samples at >= 3 distinct lengths";
  const bool relative = error == FitError::kRelative;
  for (const auto& p : samples) {
    SM_CHECK(!relative || p.ms > 0) << "FitCompute: a relative fit needs times > 0, got " << p.ms
                                    << " ms at " << p.tokens << " tokens";
  }
  std::array<double, 3> x = FitPowers(samples, {2, 1, 0}, relative).first;
  if (x[0] < 0 || x[1] < 0 || x[2] < 0) {
    // Measured times give a negative coefficient (noise on a small constant, or a quadratic term
    // too small to see at the measured lengths), which cost files reject. The least-squares fit
    // with all coefficients >= 0 is the unconstrained fit on one subset of {s^2, s, 1} (its
    // support, by the KKT conditions), so the best feasible subset fit is that optimum.
    double best = INFINITY;
    for (const std::vector<int>& powers :
         std::vector<std::vector<int>>{{2, 1}, {2, 0}, {1, 0}, {2}, {1}, {0}}) {
      auto [y, sse] = FitPowers(samples, powers, relative);
      if (y[0] >= 0 && y[1] >= 0 && y[2] >= 0 && sse < best) best = sse, x = y;
    }
    SM_CHECK(best < INFINITY && (x[0] > 0 || x[1] > 0))
        << "FitCompute: the measured times do not grow with the length";
  }
  model.a1 = x[0];
  model.b1 = x[1];
  model.g = x[2];
}

void FitActivation(const std::vector<ComputeSample>& samples, CostModel& model) {
  SM_CHECK(DistinctLengths(samples) >= 2) << "FitActivation needs >= 2 distinct lengths";
  const std::array<double, 3> x = FitPowers(samples, {1, 0}, /*relative=*/false).first;
  model.a2 = x[1];
  model.b2 = x[2];
}

double FitBandwidthGbps(const std::vector<ComputeSample>& samples) {
  double xy = 0, xx = 0;
  for (const auto& p : samples) {
    xy += p.tokens * p.ms;
    xx += p.tokens * p.tokens;
  }
  SM_CHECK(xx > 0 && xy > 0) << "FitBandwidthGbps needs transfers of > 0 bytes and time";
  double ms_per_byte = xy / xx;
  return 1.0 / (ms_per_byte * 1e6);
}

}  // namespace seqmesh::scheduler
