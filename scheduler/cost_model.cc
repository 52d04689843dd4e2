#include "scheduler/cost_model.h"

#include <array>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "runtime/check.h"

namespace seqmesh::scheduler {
namespace {

// Solves the n x n system m * x = rhs by Gaussian elimination with partial pivoting.
template <int n>
std::array<double, n> Solve(std::array<std::array<double, n>, n> m, std::array<double, n> rhs) {
  for (int col = 0; col < n; ++col) {
    int pivot = col;
    for (int r = col + 1; r < n; ++r)
      if (std::fabs(m[r][col]) > std::fabs(m[pivot][col])) pivot = r;
    SM_CHECK(std::fabs(m[pivot][col]) > 1e-300) << "least squares: singular system";
    std::swap(m[col], m[pivot]);
    std::swap(rhs[col], rhs[pivot]);
    for (int r = 0; r < n; ++r) {
      if (r == col) continue;
      double f = m[r][col] / m[col][col];
      for (int c = col; c < n; ++c) m[r][c] -= f * m[col][c];
      rhs[r] -= f * rhs[col];
    }
  }
  std::array<double, n> x;
  for (int i = 0; i < n; ++i) x[i] = rhs[i] / m[i][i];
  return x;
}

// Fits y = sum_k x_k * s^(n-1-k) with columns scaled by the largest s for conditioning.
template <int n>
std::array<double, n> FitPolynomial(const std::vector<ComputeSample>& samples) {
  double scale = 0;
  for (const auto& p : samples) scale = std::max(scale, std::fabs(p.tokens));
  SM_CHECK(scale > 0) << "least squares: all sample lengths are zero";
  std::array<std::array<double, n>, n> ata{};
  std::array<double, n> aty{};
  for (const auto& p : samples) {
    std::array<double, n> row;
    double u = p.tokens / scale;
    for (int k = 0; k < n; ++k) row[k] = std::pow(u, n - 1 - k);
    for (int i = 0; i < n; ++i) {
      aty[i] += row[i] * p.ms;
      for (int j = 0; j < n; ++j) ata[i][j] += row[i] * row[j];
    }
  }
  auto x = Solve<n>(ata, aty);
  for (int k = 0; k < n; ++k) x[k] /= std::pow(scale, n - 1 - k);
  return x;
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
                                            {"h2d_gbps", &m.h2d_gbps}};
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
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
    char* end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    SM_CHECK(end && *end == '\0' && std::isfinite(v))
        << source << ":" << line_no << ": '" << value << "' is not a number";
    if (key == "layers_per_rank") {
      SM_CHECK(v >= 1 && v == std::floor(v))
          << source << ":" << line_no << ": layers_per_rank must be a positive integer";
      m.layers_per_rank = static_cast<int>(v);
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
  SM_CHECK(m.kv_bytes_per_token >= 0 && m.a2 >= 0 && m.b2 >= 0)
      << source << ": byte counts must be >= 0";
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
  return os.str();
}

void FitCompute(const std::vector<ComputeSample>& samples, CostModel& model) {
  SM_CHECK(DistinctLengths(samples) >= 3) << "FitCompute needs samples at >= 3 distinct lengths";
  auto x = FitPolynomial<3>(samples);
  model.a1 = x[0];
  model.b1 = x[1];
  model.g = x[2];
}

void FitActivation(const std::vector<ComputeSample>& samples, CostModel& model) {
  SM_CHECK(DistinctLengths(samples) >= 2) << "FitActivation needs >= 2 distinct lengths";
  auto x = FitPolynomial<2>(samples);
  model.a2 = x[0];
  model.b2 = x[1];
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
