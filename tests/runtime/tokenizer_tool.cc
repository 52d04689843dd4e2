// For the tokenizer reference tests: `tokenizer_tool TOKENIZER DOC...` (TOKENIZER as
// LoadTokenizer takes it: a .tiktoken file or a tokenizer.json) prints each document's ids as
// one JSON array per line, as the tests' node scripts print the reference's.
//   TOKENIZER_DECODED=FILE  also writes decode(ids) of each document to FILE, one JSON string
//                           per line
//   TOKENIZER_LOSSLESS=1    fails when decoding a document's ids does not give back its bytes
//   TOKENIZER_TIME=1        writes the seconds spent encoding (all documents, the tokenizer's
//                           loading left out) to stderr
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "runtime/check.h"
#include "runtime/json.h"
#include "runtime/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: tokenizer_tool TOKENIZER DOC...\n";
    return 2;
  }
  try {
    const auto tok = seqmesh::LoadTokenizer(argv[1]);
    const char* decoded_path = std::getenv("TOKENIZER_DECODED");
    std::ofstream decoded;
    if (decoded_path) decoded.open(decoded_path, std::ios::binary);
    const bool lossless = std::getenv("TOKENIZER_LOSSLESS") != nullptr;
    std::vector<int32_t> ids;
    double seconds = 0;
    for (int i = 2; i < argc; ++i) {
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
      if (decoded_path || lossless) {
        const std::string back = tok->Decode(ids);
        if (decoded_path) decoded << seqmesh::Json::String(back).Dump() << "\n";
        SM_CHECK(!lossless || back == text) << argv[i] << ": decode(encode(text)) != text";
      }
    }
    if (std::getenv("TOKENIZER_TIME")) std::cerr << "encode_seconds " << seconds << "\n";
  } catch (const std::exception& e) {
    std::cerr << "tokenizer_tool: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
