// The cost model the planner rests on (DESIGN.md section 4, ByteScale Eq. 3), its text file
// format, and least-squares fitting of its coefficients from measured samples.
//
// All times are milliseconds for one layer's forward + backward on one rank; a plan's times are
// these times the layers per rank. Cost file format (docs/PLANNER.md): one `key value` per line,
// `#` starts a comment, unknown keys are errors.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace seqmesh::scheduler {

// The machine a cost file was profiled on (machine_* keys; issue 13, item 11): its costs hold
// there, and a file from another machine predicts another machine's steps (an AVX-512 file
// predicted steps 3x too short on an AVX2 one). Empty cpu: not recorded (older or synthetic
// files).
struct MachineInfo {
  std::string cpu;  // the CPU model, spaces as '_'
  std::string isa;  // the kernels' ISA: avx512, avx2 or generic
  std::string gpu;  // the GPU model, "none" without one
  int threads = 0;  // compute threads per rank
  int ranks = 0;    // ranks profiled at once (0: one)
  bool known() const { return !cpu.empty(); }
  bool operator==(const MachineInfo&) const = default;
  std::string Describe() const;  // "AMD_EPYC (avx2, 1 thread(s) per rank, 4 ranks, gpu none)"
};
// Why `file` (a cost file's machine) is not `here` ("" when it is, or when `file` is unknown).
std::string MachineMismatch(const MachineInfo& file, const MachineInfo& here);

struct CostModel {
  std::string name = "unnamed";
  MachineInfo machine;
  int layers_per_rank = 32;
  // T(s) = a1*s^2 + b1*s + g (ms); a1 is calibrated on causal attention.
  double a1 = 0, b1 = 0, g = 0;
  // Act(s) = a2*s + b2 (bytes).
  double a2 = 0, b2 = 0;
  // KV bytes one token sends per layer in one ring step (forward and backward together).
  double kv_bytes_per_token = 0;
  double p2p_gbps = 1, d2h_gbps = 1, h2d_gbps = 1;  // 1e9 bytes per second
  // The SSD scratch file's sequential write and read bandwidths (offload.nvme_path, O_DIRECT),
  // for activation offload to SSD (training.checkpoint_activations = "selective"); 0: not
  // profiled.
  double ssd_write_gbps = 0, ssd_read_gbps = 0;
  // What a forward + backward pass costs beside its layers (embedding, final norm, lm_head,
  // loss), per token of the pass, ms. 0 when not profiled.
  double head_ms_per_token = 0;
  // Per step beside the passes: gradient reduce-scatter, AdamW on the shard, parameter
  // all-gather. 0 when not profiled.
  double step_fixed_ms = 0;
  // A pass (one forward + backward) on a ring of D ranks (D = 1: a local micro-batch), as
  // measured in the job's own setting (seqmesh profile --rings: every rank busy): its layers
  // take pass_factor_<D> times the model's layers x sum T(s)/D, plus pass_ms_<D> per pass.
  // They carry what T(s) of one sequence alone leaves out: blockwise ring attention with its
  // merges, the ring's lock step and, where ranks share cores, waits for descheduled members
  // (docs/PLANNER.md). A size not profiled takes the largest profiled size below it; factor 1
  // and 0 ms without any.
  struct PassCalibration {
    double factor = 1;
    double ms = 0;
  };
  std::map<int, PassCalibration> pass;
  // contended_factor_<D>, contended_ms_<D>: the same for a ring of D while the job's other
  // ranks are busy (profiled beside local passes: competitors for shared cores; on this 2-core
  // VM a ring of 2 beside two busy ranks runs far slower than beside idle ones). Simulate weighs
  // the two by how much of the other ranks' time their own items (local or rings) take while
  // the ring runs. Without these, `pass`.
  std::map<int, PassCalibration> contended_pass;
  // Refit factors per ring size (scheduler/refit.h): an item of ring size D takes scale[D]
  // times the time the above give; a size without a factor takes 1. Learned by the coordinator
  // from a job's measured passes, and written as scale_<D> into the refit cost file it leaves
  // (<checkpoint.dir>/refit.cost), which later jobs and `seqmesh simulate` can use.
  std::map<int, double> scale;

  double LayerMs(double s) const { return a1 * s * s + b1 * s + g; }
  // What an offload ratio r (Eq. 3) costs in compute: the workers offload r (l - 2) + 1 of the
  // l layers (Model::OffloadedLayersFor) and recompute each from its saved input in backward, a
  // forward again (a third of T); the transfers hide under compute (the overlap condition).
  double OffloadComputeFactor(double r) const {
    const double l = layers_per_rank;
    return r <= 0 || l <= 2 ? 1.0 : 1.0 + (r * (l - 2) + 1) / (3 * l);
  }
  double ActBytes(double s) const { return a2 * s + b2; }
  PassCalibration Pass(int ring_size) const { return Lookup(pass, ring_size); }
  PassCalibration ContendedPass(int ring_size) const {
    auto it = contended_pass.find(ring_size);
    return it == contended_pass.end() ? Pass(ring_size) : it->second;
  }
  double Scale(int ring_size) const {
    auto it = scale.find(ring_size);
    return it == scale.end() ? 1.0 : it->second;
  }
  static PassCalibration Lookup(const std::map<int, PassCalibration>& m, int ring_size) {
    auto it = m.upper_bound(ring_size);
    return it == m.begin() ? PassCalibration{} : std::prev(it)->second;
  }
  // Time to send `tokens` tokens of KV to the next rank of a ring, ms.
  double KvTransferMs(double tokens) const {
    return tokens * kv_bytes_per_token / (p2p_gbps * 1e6);
  }
};

// Parses the text format; errors name the line.
CostModel ParseCostModel(const std::string& text, const std::string& source = "cost file");
CostModel LoadCostModel(const std::string& path);
std::string FormatCostModel(const CostModel& model);

// Least squares. Each returns coefficients minimizing the squared error over the samples.
struct ComputeSample {
  double tokens;
  double ms;
};
// What FitCompute minimizes: the sum of squared errors in ms, or of squared relative errors
// (each residual over its measured time), which weighs every length alike when the samples span
// orders of magnitude (a profile from 1K to 16K tokens spans 150x; in ms, the longest decides).
enum class FitError { kAbsolute, kRelative };
// Fits a1, b1, g of T(s), all >= 0 (non-negative least squares: where the plain fit gives a
// negative coefficient, the best fit with that term dropped); needs three distinct lengths.
void FitCompute(const std::vector<ComputeSample>& samples, CostModel& model,
                FitError error = FitError::kAbsolute);
// Fits a2, b2 of Act(s) from (tokens, bytes) samples; needs two distinct lengths.
void FitActivation(const std::vector<ComputeSample>& samples, CostModel& model);
// Fits p2p_gbps from (bytes, ms) samples of one transfer (slope through the origin).
double FitBandwidthGbps(const std::vector<ComputeSample>& samples);

}  // namespace seqmesh::scheduler
