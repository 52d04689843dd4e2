#include "runtime/manifest.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "runtime/check.h"
#include "runtime/checkpoint.h"
#include "runtime/files.h"

namespace seqmesh {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxFileName = 255;

}  // namespace

std::string StepDirName(uint64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08llu", static_cast<unsigned long long>(step));
  return buf;
}

std::string StepDir(const std::string& root, uint64_t step) {
  return root + "/" + StepDirName(step);
}

int64_t StepOfDirName(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() <= 5 || name.size() > 5 + 18) return -1;
  const std::string digits = name.substr(5);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

ManifestFile DigestFile(const std::string& dir, const std::string& name) {
  MappedFile f(dir + "/" + name);
  return {name, f.size(), Fnv1a64(f.data(), f.size())};
}

std::string CheckFileName(const std::string& name) {
  if (name.empty()) return "is empty";
  if (name.size() > kMaxFileName)
    return "is " + std::to_string(name.size()) + " bytes long (at most " +
           std::to_string(kMaxFileName) + ")";
  if (name.front() == '/') return "starts with '/' (names are relative to the step directory)";
  for (char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\')
      return "contains a control character or a backslash";
  size_t begin = 0;
  while (begin <= name.size()) {
    size_t end = name.find('/', begin);
    if (end == std::string::npos) end = name.size();
    const std::string part = name.substr(begin, end - begin);
    if (part.empty()) return "has an empty path component";
    if (part == "." || part == "..") return "has a '" + part + "' component";
    begin = end + 1;
  }
  if (name == kManifestName) return "is reserved for the manifest";
  return "";
}

void WriteManifest(const std::string& dir, uint64_t step, const std::vector<ManifestFile>& files,
                   const Json& extra) {
  Json list = Json::Array();
  for (const ManifestFile& f : files) {
    Json e = Json::Object();
    e.Set("name", Json::String(f.name));
    e.Set("bytes", Json::Integer(static_cast<int64_t>(f.bytes)));
    e.Set("fnv1a64", Json::String(std::to_string(f.fnv1a64)));
    if (f.rank >= 0) e.Set("rank", Json::Integer(f.rank));
    list.Push(std::move(e));
  }
  Json manifest = Json::Object();
  manifest.Set("step", Json::Integer(static_cast<int64_t>(step)));
  for (const auto& [key, value] : extra.AsObject("manifest keys")) manifest.Set(key, value);
  manifest.Set("files", std::move(list));
  const std::string text = manifest.Dump() + "\n";
  WriteFileAtomically(dir + "/" + kManifestName, text.data(), text.size());
}

namespace {

Json ReadManifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestName;
  SM_CHECK(fs::exists(path)) << "'" << dir << "' is not a complete checkpoint: it has no "
                             << kManifestName;
  MappedFile mf(path);
  return Json::Parse(std::string_view(reinterpret_cast<const char*>(mf.data()), mf.size()), path);
}

}  // namespace

std::vector<std::string> ManifestFileNames(const std::string& dir) {
  const std::string path = dir + "/" + kManifestName;
  std::vector<std::string> names;
  const Json manifest = ReadManifest(dir);  // outlives the loop over its array
  for (const Json& e : manifest.Require("files", path).AsArray(path + " files"))
    names.push_back(e.Require("name", path).AsString(path + " name"));
  return names;
}

Json VerifyManifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestName;
  const Json manifest = ReadManifest(dir);
  for (const Json& e : manifest.Require("files", path).AsArray(path + " files")) {
    const std::string name = e.Require("name", path).AsString(path + " name");
    const std::string why = CheckFileName(name);
    SM_CHECK(why.empty()) << "'" << path << "' lists the file name '" << name << "', which " << why;
    const std::string file = dir + "/" + name;
    SM_CHECK(fs::exists(file)) << "checkpoint file '" << file << "' is missing";
    MappedFile f(file);
    const int64_t bytes = e.Require("bytes", path).AsInt(path + " bytes");
    SM_CHECK(static_cast<int64_t>(f.size()) == bytes)
        << "checkpoint file '" << file << "' has " << f.size() << " bytes, the manifest says "
        << bytes << " (truncated?)";
    SM_CHECK(std::to_string(Fnv1a64(f.data(), f.size())) ==
             e.Require("fnv1a64", path).AsString(path + " fnv1a64"))
        << "checkpoint file '" << file << "' does not match its checksum (corrupt)";
  }
  return manifest;
}

std::vector<std::pair<uint64_t, std::string>> CommittedStepDirs(const std::string& root) {
  std::vector<std::pair<uint64_t, std::string>> out;
  if (!fs::exists(root)) return out;
  for (const auto& entry : fs::directory_iterator(root)) {
    const int64_t step = StepOfDirName(entry.path().filename().string());
    if (!entry.is_directory() || step < 0 || !fs::exists(entry.path() / kManifestName)) continue;
    out.emplace_back(static_cast<uint64_t>(step), entry.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

}  // namespace seqmesh
