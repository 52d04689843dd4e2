// runtime/manifest: a manifest.json of any bytes in a step directory that holds two small files
// verifies or is refused with a seqmesh::Error; no listed name reaches outside the directory.
#include <cstdlib>
#include <string>

#include "runtime/manifest.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = seqmesh::fuzz::ScratchDir() + "/step-00000002";
    std::filesystem::create_directories(d + "/sub");
    const uint8_t a[] = {'a', 'b', 'c'};
    seqmesh::fuzz::WriteScratch("step-00000002/model.safetensors", a, sizeof(a));
    seqmesh::fuzz::WriteScratch("step-00000002/sub/part", a, 1);
    return d;
  }();
  seqmesh::fuzz::WriteScratch("step-00000002/manifest.json", data, size);
  return seqmesh::fuzz::Refusing([&] {
    seqmesh::VerifyManifest(dir);
    for (const std::string& name : seqmesh::ManifestFileNames(dir))
      if (!seqmesh::CheckFileName(name).empty()) std::abort();  // verified names are valid
  });
}
