// What a build without CUDA, or a machine without a GPU, says when asked for the CUDA backend
// (issue 16): MakeBackend(Device::kCuda) fails with one line naming the problem and the fix, and
// training.device = "cuda" falls back to the CPU with one line saying why. Runs everywhere; on a
// machine with a usable GPU it checks that MakeBackend gives the CUDA backend instead.
#include <gtest/gtest.h>

#include <string>

#include "runtime/backend.h"
#include "runtime/run_config.h"

namespace seqmesh {
namespace {

std::string ErrorOf(Device device) {
  try {
    MakeBackend(device, {});
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceChoice, CpuIsAlwaysAvailable) {
  EXPECT_EQ(DeviceUnavailableReason(Device::kCpu), "");
  EXPECT_EQ(DeviceName(Device::kCuda), "cuda");
  const DeviceChoice c = ChooseComputeDevice(Device::kCpu);
  EXPECT_EQ(c.device, Device::kCpu);
  EXPECT_EQ(c.note, "");
}

TEST(DeviceChoice, MakeBackendCudaWithoutAGpuFailsWithOneLineNamingTheFix) {
  const std::string reason = DeviceUnavailableReason(Device::kCuda);
  if (reason.empty()) {
    EXPECT_EQ(MakeBackend(Device::kCuda, {})->device(), Device::kCuda);
    GTEST_SKIP() << "this machine has a usable CUDA device: MakeBackend(kCuda) succeeded";
  }
#if SEQMESH_CUDA_BACKEND
  EXPECT_EQ(reason.rfind("no CUDA device: cudaGetDeviceCount returned ", 0), 0u) << reason;
  EXPECT_NE(reason.find("run on a machine with an NVIDIA GPU"), std::string::npos) << reason;
#else
  EXPECT_EQ(reason.rfind("built without CUDA", 0), 0u) << reason;
  EXPECT_NE(reason.find("rebuild with nvcc on PATH"), std::string::npos) << reason;
#endif
  const std::string error = ErrorOf(Device::kCuda);
  EXPECT_EQ(error, "device cuda: " + reason);
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_EQ(error.find(".cc:"), std::string::npos) << "no file:line for the user: " << error;
}

TEST(DeviceChoice, TrainingDeviceCudaFallsBackToTheCpuWithOneLine) {
  const DeviceChoice c = ChooseComputeDevice(Device::kCuda);
  EXPECT_EQ(c.device, Device::kCpu);
  EXPECT_EQ(c.note.rfind("training.device = \"cuda\": ", 0), 0u) << c.note;
  EXPECT_NE(c.note.find("; running on CPU"), std::string::npos) << c.note;
  EXPECT_EQ(c.note.find('\n'), std::string::npos) << c.note;
  const std::string reason = DeviceUnavailableReason(Device::kCuda);
  if (!reason.empty()) {
    EXPECT_NE(c.note.find(reason), std::string::npos) << c.note;
  }
}

TEST(DeviceChoice, TrainingDeviceIsParsedAndChecked) {
  EXPECT_EQ(RunConfig::Parse("", "x.toml").training.device, Device::kCpu);
  const RunConfig c = RunConfig::Parse("[training]\ndevice = \"cuda\"\n", "x.toml");
  EXPECT_EQ(c.training.device, Device::kCuda);
  const std::string toml = c.ToToml();  // toml++ quotes strings with ' or "
  EXPECT_TRUE(toml.find("device = 'cuda'") != std::string::npos ||
              toml.find("device = \"cuda\"") != std::string::npos)
      << toml;
  EXPECT_EQ(RunConfig::Parse(c.ToToml(), "round trip").training.device, Device::kCuda);
  try {
    RunConfig::Parse("[training]\ndevice = \"tpu\"\n", "x.toml");
    ADD_FAILURE() << "device = \"tpu\" was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training.device must be cpu or cuda, got \"tpu\""),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace seqmesh
