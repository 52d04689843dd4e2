// The distributed checkpoint's optimizer parts (launch/dist_checkpoint.h), in process with one
// GradSync per rank: parts written by N ranks load on M ranks with bitwise the moments and step;
// a part is byte for byte what the whole-shard writer of before produced, also when the store
// hands out its pieces split into sub-pieces in any order; a hole or an overlap names the piece
// and the element.
#include "launch/dist_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/manifest.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;
using testing::ThrowsWith;

// Rank `rank` of `size` for what a checkpoint needs of a communicator: its rank and size. Every
// collective fails: saving and loading must not communicate.
class RankOf : public Communicator {
 public:
  RankOf(int rank, int size) : Communicator(CommOptions{}), rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "rank-of"; }
  void AllReduce(void*, int64_t, DType) override { Fail(); }
  void ReduceScatter(const void*, void*, int64_t, DType) override { Fail(); }
  void AllGather(const void*, void*, int64_t, DType) override { Fail(); }
  void Broadcast(void*, int64_t, DType, int) override { Fail(); }
  void Barrier() override { Fail(); }
  double AllReduceScalar(double) override { Fail(); }
  CommWork StartReduceScatter(const void*, void*, int64_t, DType) override { Fail(); }
  CommWork StartAllGather(const void*, void*, int64_t, DType) override { Fail(); }
  P2PGroup Start(std::span<const P2POp>) override { Fail(); }
  void Wait(CommWork&) override { Fail(); }
  bool Test(CommWork&) override { Fail(); }

 private:
  [[noreturn]] static void Fail() { throw Error("a checkpoint test communicated"); }
  int rank_, size_;
};

ModelConfig Config() {
  ModelConfig c;
  c.vocab = 37;
  c.hidden = 16;
  c.layers = 2;
  c.heads = 2;
  c.kv_heads = 1;
  c.ffn = 24;
  return c;
}

ModelOptions Options() {
  ModelOptions o;
  o.max_tokens = 4;
  return o;
}

// Exact in f32 and distinct per tensor, element and moment.
float MomentValue(size_t t, int64_t i, bool is_v) {
  return static_cast<float>(t) * 4096.0f + static_cast<float>(i) + (is_v ? 0.5f : 0.25f);
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// A world of `ranks` GradSyncs over one model, buckets of uneven size so that shards straddle
// tensors.
struct World {
  Model model{Config(), Options()};
  std::vector<std::unique_ptr<RankOf>> comms;
  std::vector<std::unique_ptr<GradSync>> syncs;
  explicit World(int ranks) {
    const size_t n = model.params().size();
    for (int r = 0; r < ranks; ++r) {
      comms.push_back(std::make_unique<RankOf>(r, ranks));
      syncs.push_back(std::make_unique<GradSync>(*comms.back(), model.params(), model.grads(),
                                                 AdamWConfig{},
                                                 std::vector<size_t>{1, 4, n - 1, n}));
    }
  }
};

class DistCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(test.begin(), test.end(), '/', '_');  // parameterized names hold '/'
    dir_ = (fs::temp_directory_path() /
            ("seqmesh_dist_ckpt_" + std::to_string(::getpid()) + "_" + test))
               .string();
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Every rank of `w` holds MomentValue at optimizer step 7; each writes its part into dir_ and
  // the manifest lists the parts of the ranks in `listed` (all when empty).
  void WriteParts(World& w, const std::vector<int>& listed = {}) {
    w.model.InitRandom(3, 0.5f);
    const int n = static_cast<int>(w.syncs.size());
    std::vector<std::string> names;
    for (int r = 0; r < n; ++r) {
      w.syncs[r]->LoadMoments(
          [](size_t t, int64_t offset, int64_t len, float* m, float* v) {
            for (int64_t i = 0; i < len; ++i) {
              m[i] = MomentValue(t, offset + i, false);
              v[i] = MomentValue(t, offset + i, true);
            }
          },
          7);
      const std::vector<std::string> files =
          WriteCheckpointPart(dir_, r, n, w.model, *w.syncs[r], ExportDType::kAuto);
      if (listed.empty() || std::count(listed.begin(), listed.end(), r))
        names.insert(names.end(), files.begin(), files.end());
    }
    if (listed.size() && !std::count(listed.begin(), listed.end(), 0))
      names.insert(names.begin(), {"config.json", "model.safetensors"});
    WriteManifestOf(names);
  }
  void WriteManifestOf(const std::vector<std::string>& names) {
    std::vector<ManifestFile> digests;
    for (const std::string& name : names) digests.push_back(DigestFile(dir_, name));
    WriteManifest(dir_, 7, digests);
  }

  std::string dir_;
};

struct Ranks {
  int written, read;
};
void PrintTo(const Ranks& r, std::ostream* os) {
  *os << r.written << " ranks write, " << r.read << " read";
}

class DistCheckpointRanksTest : public DistCheckpointTest,
                                public ::testing::WithParamInterface<Ranks> {};

TEST_P(DistCheckpointRanksTest, LoadsBitwiseOnAnyRankCount) {
  World written(GetParam().written);
  WriteParts(written);
  World read(GetParam().read);
  std::vector<int64_t> seen(read.model.params().size(), 0);
  for (auto& sync : read.syncs) {
    LoadCheckpointParts(dir_, read.model, *sync);
    EXPECT_EQ(sync->step(), 7);
    sync->ForEachMomentPiece(
        [&](size_t t, int64_t offset, const float* m, const float* v, int64_t len) {
          seen[t] += len;
          for (int64_t i = 0; i < len; ++i) {
            ASSERT_EQ(m[i], MomentValue(t, offset + i, false)) << t << "@" << offset + i;
            ASSERT_EQ(v[i], MomentValue(t, offset + i, true)) << t << "@" << offset + i;
          }
        });
  }
  for (size_t t = 0; t < seen.size(); ++t) {
    const Tensor& p = read.model.params()[t];
    EXPECT_EQ(seen[t], p.numel()) << p.name();
    EXPECT_EQ(0, std::memcmp(p.data(), written.model.params()[t].data(), p.bytes())) << p.name();
  }
}

INSTANTIATE_TEST_SUITE_P(WrittenByReadBy, DistCheckpointRanksTest,
                         ::testing::Values(Ranks{1, 1}, Ranks{4, 2}, Ranks{2, 4}, Ranks{3, 1},
                                           Ranks{1, 3}, Ranks{4, 3}),
                         [](const auto& info) {
                           return std::to_string(info.param.written) + "To" +
                                  std::to_string(info.param.read);
                         });

// The writer before the offload work: views over ForEachMomentPiece's pointers, one
// WriteSafetensors at the end (launch/dist_checkpoint.cc at f2476c7).
void WriteWholeShard(const std::string& path, int rank, int world_size, const Model& model,
                     const GradSync& sync) {
  std::vector<Tensor> pieces;
  const std::vector<Tensor>& params = model.params();
  sync.ForEachMomentPiece(
      [&](size_t t, int64_t offset, const float* m, const float* v, int64_t len) {
        const std::string suffix = params[t].name() + "@" + std::to_string(offset);
        pieces.emplace_back("m." + suffix, DType::kF32, Shape{len}, const_cast<float*>(m));
        pieces.emplace_back("v." + suffix, DType::kF32, Shape{len}, const_cast<float*>(v));
      });
  WriteSafetensors(path, pieces, false,
                   {{"optimizer_step", std::to_string(sync.step())},
                    {"rank", std::to_string(rank)},
                    {"world_size", std::to_string(world_size)}});
}

TEST_F(DistCheckpointTest, PartsAreByteIdenticalToTheWholeShardWriter) {
  World w(3);
  WriteParts(w);
  for (int r = 0; r < 3; ++r) {
    const std::string old_path = dir_ + "/whole-shard.safetensors";
    WriteWholeShard(old_path, r, 3, w.model, *w.syncs[r]);
    EXPECT_EQ(ReadAll(dir_ + "/" + OptimizerPartName(r)), ReadAll(old_path)) << "rank " << r;
  }
}

// A rank's moments as the store would hand them out in sub-groups of `elems`: every piece cut
// into consecutive sub-pieces, with their own copies of the moments.
struct SubPiece {
  size_t tensor;
  int64_t offset;
  std::vector<float> m, v;
};
std::vector<SubPiece> SubPieces(const GradSync& sync, int64_t elems) {
  std::vector<SubPiece> out;
  sync.ForEachMomentPiece(
      [&](size_t t, int64_t offset, const float* m, const float* v, int64_t len) {
        for (int64_t i = 0; i < len; i += elems) {
          const int64_t n = std::min(elems, len - i);
          out.push_back({t, offset + i, {m + i, m + i + n}, {v + i, v + i + n}});
        }
      });
  return out;
}

TEST_F(DistCheckpointTest, SubPiecesInAnyOrderWriteTheSameBytes) {
  World w(2);
  WriteParts(w);
  const GradSync& sync = *w.syncs[1];
  const std::map<std::string, std::string> meta = {
      {"optimizer_step", "7"}, {"rank", "1"}, {"world_size", "2"}};
  for (int64_t elems : {1, 7, 100}) {
    std::vector<SubPiece> subs = SubPieces(sync, elems);
    std::reverse(subs.begin(), subs.end());
    const std::string path = dir_ + "/split.safetensors";
    OptimizerPartWriter part(path, w.model.params(), sync.moment_pieces(), meta);
    for (const SubPiece& s : subs)
      part.Write(s.tensor, s.offset, s.m.data(), s.v.data(), static_cast<int64_t>(s.m.size()));
    part.Commit();
    EXPECT_EQ(ReadAll(path), ReadAll(dir_ + "/" + OptimizerPartName(1))) << elems;
  }
}

TEST_F(DistCheckpointTest, AMissedOrStraddlingSubPieceIsNamed) {
  World w(2);
  WriteParts(w);
  const GradSync& sync = *w.syncs[0];
  const std::vector<MomentPiece> pieces = sync.moment_pieces();
  ASSERT_GE(pieces.size(), 2u);
  const std::string path = dir_ + "/part.safetensors";
  const std::string first = w.model.params()[pieces[0].tensor].name();
  std::vector<SubPiece> subs = SubPieces(sync, 5);
  {
    OptimizerPartWriter part(path, w.model.params(), pieces, {});
    for (size_t k = 1; k < subs.size(); ++k)
      part.Write(subs[k].tensor, subs[k].offset, subs[k].m.data(), subs[k].v.data(),
                 static_cast<int64_t>(subs[k].m.size()));
    EXPECT_TRUE(ThrowsWith([&] { part.Commit(); }, "bytes [0, 20) of tensor 'm." + first + "@" +
                                                       std::to_string(pieces[0].offset) + "'"));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  // Pieces 0 and 1 are consecutive runs of the shard, but a write may not run from one into the
  // other: they are different tensors of the file.
  OptimizerPartWriter part(path, w.model.params(), pieces, {});
  std::vector<float> zeros(pieces[0].length + 1, 0.0f);
  EXPECT_TRUE(ThrowsWith(
      [&] {
        part.Write(pieces[0].tensor, pieces[0].offset, zeros.data(), zeros.data(),
                   pieces[0].length + 1);
      },
      "lie in no single piece of this rank"));
}

TEST_F(DistCheckpointTest, AHoleNamesTheElementsAndThePieceBeforeThem) {
  World w(3);
  WriteParts(w, {0, 2});  // rank 1's part is not listed
  World read(1);
  // The first bucket is the first tensor alone: rank 1 holds the middle third of it.
  const MomentPiece before = w.syncs[0]->moment_pieces()[0];
  const MomentPiece missing = w.syncs[1]->moment_pieces()[0];
  const std::string name = w.model.params()[missing.tensor].name();
  ASSERT_EQ(before.tensor, missing.tensor);
  EXPECT_TRUE(ThrowsWith([&] { LoadCheckpointParts(dir_, read.model, *read.syncs[0]); },
                         "elements of " + name + ": elements [" + std::to_string(missing.offset) +
                             ", " + std::to_string(missing.offset + missing.length) + ") of m." +
                             name + " are in no piece (they follow '" + dir_ + "/" +
                             OptimizerPartName(0) + "': piece 'm." + name + "@0')"));
}

TEST_F(DistCheckpointTest, AnOverlapNamesThePieceAndTheElement) {
  World w(2);
  WriteParts(w);
  // A copy of rank 1's part listed beside the parts: each of its pieces is in two files.
  fs::copy_file(dir_ + "/" + OptimizerPartName(1), dir_ + "/" + OptimizerPartName(2));
  std::vector<std::string> names = ManifestFileNames(dir_);
  names.push_back(OptimizerPartName(2));
  WriteManifestOf(names);
  World read(2);
  const MomentPiece p = w.syncs[1]->moment_pieces()[0];
  const std::string piece =
      "m." + w.model.params()[p.tensor].name() + "@" + std::to_string(p.offset);
  EXPECT_TRUE(ThrowsWith([&] { LoadCheckpointParts(dir_, read.model, *read.syncs[0]); },
                         "optimizer-rank-00002.safetensors': piece '" + piece +
                             "' overlaps another part at element " + std::to_string(p.offset)));
}

}  // namespace
}  // namespace seqmesh
