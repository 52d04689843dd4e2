// For tiktoken_ref_test.sh: `tiktoken_tool RANKS_FILE ENCODING DOC...` prints each document's ids
// as one JSON array per line (as the test's node script prints gpt-tokenizer's), and fails when
// decoding a document's ids does not give back its bytes. With TIKTOKEN_TIME set it also writes
// the seconds spent encoding (all documents, the rank file's loading left out) to stderr.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "runtime/check.h"
#include "runtime/tiktoken.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tiktoken_tool RANKS_FILE ENCODING DOC...\n";
    return 2;
  }
  try {
    const auto tok = seqmesh::TiktokenTokenizer::Load(argv[1], argv[2]);
    std::vector<int32_t> ids;
    double seconds = 0;
    for (int i = 3; i < argc; ++i) {
      std::ifstream in(argv[i], std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string text = ss.str();
      ids.clear();
      const auto t0 = std::chrono::steady_clock::now();
      tok->Encode(text, ids);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << "[";
      for (size_t k = 0; k < ids.size(); ++k) std::cout << (k ? "," : "") << ids[k];
      std::cout << "]\n";
      SM_CHECK(tok->Decode(ids) == text) << argv[i] << ": decode(encode(text)) != text";
    }
    if (std::getenv("TIKTOKEN_TIME")) std::cerr << "encode_seconds " << seconds << "\n";
  } catch (const std::exception& e) {
    std::cerr << "tiktoken_tool: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
