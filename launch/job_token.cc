#include "launch/job_token.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "runtime/check.h"
#include "runtime/files.h"

namespace seqmesh::launch {

std::string ReadJobToken(const std::string& token_file) {
  std::string token;
  if (!token_file.empty()) {
    SM_CHECK(std::filesystem::exists(token_file))
        << "--token-file '" << token_file << "' does not exist";
    struct stat st;
    if (::stat(token_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      std::cerr << "warning: the job token file '" << token_file
                << "' is readable by other users (chmod 600 it)\n";
    MappedFile f(token_file);
    token.assign(reinterpret_cast<const char*>(f.data()), f.size());
  } else if (const char* env = std::getenv("SEQMESH_JOB_TOKEN")) {
    token = env;
  }
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  SM_CHECK(!token.empty())
      << "no job token: pass --token-file F or set SEQMESH_JOB_TOKEN (the launcher makes one)";
  SM_CHECK(token.size() >= 16) << "the job token has " << token.size()
                               << " characters; use at least 16 random ones";
  return token;
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  // Every byte of the longer string is visited whatever the contents; only the lengths (not
  // secret: tokens have a fixed length) decide the time.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

bool IsHex16(const std::string& s) {
  return s.size() == 16 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace seqmesh::launch
