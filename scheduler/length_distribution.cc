#include "scheduler/length_distribution.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "runtime/check.h"

namespace seqmesh::scheduler {
namespace {

constexpr double kK = 1024;
const double kUpper[] = {1 * kK,  2 * kK,   4 * kK,   8 * kK,   16 * kK,   32 * kK,
                         64 * kK, 128 * kK, 256 * kK, 512 * kK, 1024 * kK, 2048 * kK};
const double kByted[] = {.15,   .30,    .35,    .09,    .05,    .028, .016,
                         .0088, .00342, .00186, .00086, .00057, .0005};
const double kGithub[] = {.40,   .20,    .18,   .13,    .06,     .018,   .007,
                          .0029, .00138, .0006, .00018, .000045, .000006};

}  // namespace

void LengthDistribution::Finish(const std::string& source) {
  double total = 0;
  cumulative_.clear();
  for (const auto& b : buckets_) {
    total += b.probability;
    cumulative_.push_back(total);
  }
  SM_CHECK(!buckets_.empty() || !empirical_.empty()) << source << ": no lengths";
  if (!buckets_.empty()) {
    SM_CHECK(std::fabs(total - 1.0) <= 1e-3)
        << source << ": probabilities sum to " << total << ", not 1";
    cumulative_.back() = 1.0;
  }
}

LengthDistribution LengthDistribution::Named(const std::string& name) {
  const double* p = nullptr;
  if (name == "byted-like") p = kByted;
  if (name == "github-like") p = kGithub;
  SM_CHECK(p) << "unknown lengths name '" << name << "' (known: byted-like, github-like)";
  LengthDistribution d;
  double lower = kUpper[0] / 2;
  for (int i = 0; i < 12; ++i) {
    d.buckets_.push_back({lower, kUpper[i], p[i]});
    lower = kUpper[i];
  }
  d.buckets_.push_back({2048 * kK, 2048 * kK, p[12]});
  d.Finish(name);
  return d;
}

LengthDistribution LengthDistribution::ParseLengthsText(const std::string& text,
                                                        const std::string& source) {
  LengthDistribution d;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  double lower = -1;
  while (std::getline(in, line)) {
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string bound, prob, extra;
    if (!(fields >> bound)) continue;
    SM_CHECK((fields >> prob) && !(fields >> extra))
        << source << ":" << line_no
        << ": expected `upper_bound probability` or `=tokens probability`";
    bool atom = bound[0] == '=';
    char* end = nullptr;
    double b = std::strtod(bound.c_str() + (atom ? 1 : 0), &end);
    SM_CHECK(*end == '\0' && b >= 1)
        << source << ":" << line_no << ": bad length '" << bound << "'";
    double p = std::strtod(prob.c_str(), &end);
    SM_CHECK(*end == '\0' && p >= 0 && p <= 1)
        << source << ":" << line_no << ": bad probability '" << prob << "'";
    if (atom) {
      d.buckets_.push_back({b, b, p});
    } else {
      double lo = lower < 0 ? b / 2 : lower;
      SM_CHECK(b > lo) << source << ":" << line_no << ": upper bound " << b
                       << " not above the previous bound " << lo;
      d.buckets_.push_back({lo, b, p});
      lower = b;
    }
  }
  d.Finish(source);
  return d;
}

LengthDistribution LengthDistribution::FromMegatronIndex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SM_CHECK(in.good()) << "cannot open index '" << path << "'";
  char magic[9];
  uint64_t version = 0, sequences = 0, documents = 0;
  uint8_t dtype = 0;
  in.read(magic, 9);
  SM_CHECK(in && std::memcmp(magic, "MMIDIDX\0\0", 9) == 0)
      << path << ": not a Megatron index (bad magic)";
  in.read(reinterpret_cast<char*>(&version), 8);
  in.read(reinterpret_cast<char*>(&dtype), 1);
  in.read(reinterpret_cast<char*>(&sequences), 8);
  in.read(reinterpret_cast<char*>(&documents), 8);
  SM_CHECK(in && version == 1) << path << ": unsupported index version " << version;
  SM_CHECK(sequences > 0 && sequences < (1ull << 40)) << path << ": bad sequence count";
  std::vector<int32_t> lengths(sequences);
  in.read(reinterpret_cast<char*>(lengths.data()), sequences * 4);
  SM_CHECK(in) << path << ": truncated (expected " << sequences << " lengths)";
  LengthDistribution d;
  for (int32_t l : lengths)
    if (l > 0) d.empirical_.push_back(l);
  d.Finish(path);
  return d;
}

LengthDistribution LengthDistribution::FromArgument(const std::string& arg) {
  if (arg == "byted-like" || arg == "github-like") return Named(arg);
  if (arg.size() > 4 && arg.substr(arg.size() - 4) == ".idx") return FromMegatronIndex(arg);
  std::ifstream in(arg);
  SM_CHECK(in.good()) << "unknown lengths name or unreadable file '" << arg
                      << "' (known names: byted-like, github-like)";
  std::stringstream text;
  text << in.rdbuf();
  return ParseLengthsText(text.str(), arg);
}

int64_t LengthDistribution::Sample(std::mt19937_64& rng) const {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  if (!empirical_.empty()) return empirical_[rng() % empirical_.size()];
  double x = u(rng);
  size_t i = std::lower_bound(cumulative_.begin(), cumulative_.end(), x) - cumulative_.begin();
  const Bucket& b = buckets_[std::min(i, buckets_.size() - 1)];
  if (b.lower == b.upper) return static_cast<int64_t>(b.upper);
  double v = std::exp(std::log(b.lower) + u(rng) * (std::log(b.upper) - std::log(b.lower)));
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(v)), 1, static_cast<int64_t>(b.upper));
}

std::vector<int64_t> LengthDistribution::DrawBatch(int64_t batch_tokens, int64_t context,
                                                   uint64_t seed) const {
  SM_CHECK(batch_tokens > 0 && context > 0) << "batch tokens and context must be > 0";
  std::mt19937_64 rng(seed);
  std::vector<int64_t> lengths;
  int64_t total = 0;
  while (total < batch_tokens) {
    int64_t s = std::min({Sample(rng), context, batch_tokens - total});
    lengths.push_back(s);
    total += s;
  }
  return lengths;
}

}  // namespace seqmesh::scheduler
