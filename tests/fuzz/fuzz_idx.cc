// runtime/indexed_dataset (Megatron's .idx/.bin): an .idx of any bytes beside a .bin of 4 KiB
// opens or is refused with a seqmesh::Error; every sequence of a dataset that opens reads (or is
// refused) inside the .bin.
#include <vector>

#include "runtime/indexed_dataset.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string prefix = [] {
    std::vector<uint8_t> bin(4096);
    for (size_t i = 0; i < bin.size(); ++i) bin[i] = static_cast<uint8_t>(i * 7);
    seqmesh::fuzz::WriteScratch("data.bin", bin.data(), bin.size());
    return seqmesh::fuzz::ScratchDir() + "/data";
  }();
  seqmesh::fuzz::WriteScratch("data.idx", data, size);
  return seqmesh::fuzz::Refusing([&] {
    const seqmesh::IndexedDataset ds = seqmesh::IndexedDataset::Open(prefix);
    std::vector<int32_t> tokens;
    const int64_t n = ds.num_sequences() < 256 ? ds.num_sequences() : 256;
    for (int64_t s = 0; s < n; ++s) {
      tokens.clear();
      seqmesh::fuzz::Refusing([&] { ds.Read(s, tokens); });
      seqmesh::fuzz::Refusing([&] { ds.ReadRange(s, 1, 2, tokens); });
    }
  });
}
