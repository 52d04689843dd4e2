#include "runtime/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

#include "runtime/check.h"

namespace seqmesh {

struct Regex::Code {
  pcre2_code* code = nullptr;
};

Regex::Regex(std::string_view pattern, std::string_view what) : code_(new Code) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (!code_->code) {
    delete code_;
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    SM_CHECK(false) << what << ": the pattern does not compile at offset " << offset << ": "
                    << reinterpret_cast<const char*>(message);
  }
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter
}

Regex::~Regex() {
  pcre2_code_free(code_->code);
  delete code_;
}

void Regex::Matches(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t at = 0;
  while (at < text.size()) {
    // PCRE2 checks the whole subject's UTF-8 on every call unless told not to: once is enough.
    const int rc = pcre2_match(code_->code, subject, text.size(), at,
                               at == 0 ? 0 : PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) {
      const size_t bad = pcre2_get_ovector_pointer(md)[0];  // where a UTF error begins
      pcre2_match_data_free(md);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      SM_CHECK(false) << "the text is not valid UTF-8 near byte " << bad << " (PCRE2 error " << rc
                      << "): convert it to UTF-8 first";
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] == ov[0]) {  // an empty match: step over one character
      size_t next = ov[0] + 1;
      while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xC0) == 0x80) ++next;
      at = next;
      continue;
    }
    out.emplace_back(ov[0], ov[1]);
    at = ov[1];
  }
  pcre2_match_data_free(md);
}

}  // namespace seqmesh
