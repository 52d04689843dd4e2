// runtime/safetensors: a file of any bytes opens or is refused with a seqmesh::Error; every
// tensor of a file that opens reads into an f32 tensor of its shape (or is refused by name), so
// ASan sees every byte the header claims.
#include <cstdlib>
#include <vector>

#include "runtime/safetensors.h"
#include "runtime/tensor.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

bool ShapeOf(const std::vector<int64_t>& d, seqmesh::Shape& s) {
  switch (d.size()) {
    case 0:
      s = seqmesh::Shape();
      return true;
    case 1:
      s = seqmesh::Shape{d[0]};
      return true;
    case 2:
      s = seqmesh::Shape{d[0], d[1]};
      return true;
    case 3:
      s = seqmesh::Shape{d[0], d[1], d[2]};
      return true;
    case 4:
      s = seqmesh::Shape{d[0], d[1], d[2], d[3]};
      return true;
    default:
      return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = seqmesh::fuzz::WriteScratch("in.safetensors", data, size);
  return seqmesh::fuzz::Refusing([&] {
    const seqmesh::SafetensorsFile file = seqmesh::SafetensorsFile::Open(path);
    for (const seqmesh::SafetensorsEntry& e : file.entries()) {
      // Open checked the region against the file, so a tensor holds at most `size` bytes.
      if (e.bytes > size) std::abort();
      seqmesh::Shape shape;
      if (!ShapeOf(e.shape, shape)) continue;
      std::vector<float> values(static_cast<size_t>(shape.numel()));
      seqmesh::fuzz::Refusing([&] {
        file.ReadInto(e.name, seqmesh::Tensor(e.name, seqmesh::DType::kF32, shape, values.data()));
      });
    }
  });
}
