#include "runtime/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_set>

#include "runtime/check.h"
#include "runtime/text.h"

namespace seqmesh {

const char* TypeName(Json::Type t) {
  switch (t) {
    case Json::Type::kNull:
      return "null";
    case Json::Type::kBool:
      return "a boolean";
    case Json::Type::kNumber:
      return "a number";
    case Json::Type::kString:
      return "a string";
    case Json::Type::kArray:
      return "an array";
    case Json::Type::kObject:
      return "an object";
  }
  return "?";
}

Json Json::Bool(bool b) {
  Json j;
  j.type_ = Type::kBool;
  j.bool_ = b;
  return j;
}

Json Json::Number(double v) {
  SM_CHECK(std::isfinite(v)) << "JSON cannot hold the number " << v;
  // The shortest text that reads back as v (0.1, not 0.10000000000000001).
  char buf[32];
  int n = 0;
  for (int digits = 15; digits <= 17; ++digits) {
    n = std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  Json j;
  j.type_ = Type::kNumber;
  j.text_.assign(buf, n);
  return j;
}

// As Python's repr of the shortest digits: scientific ("1e-05") below 1e-4 and from 1e16, else
// positional with at least one decimal ("500000.0"), so a config reads as transformers writes it.
Json Json::Float(float v) {
  SM_CHECK(std::isfinite(v)) << "JSON cannot hold the number " << v;
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  SM_CHECK(ec == std::errc()) << "cannot format the float " << v;
  const std::string_view sci(buf, end - buf);
  int exponent = 0;
  const char* e = sci.data() + sci.find('e') + 1;
  std::from_chars(e + (*e == '+'), end, exponent);
  Json j;
  j.type_ = Type::kNumber;
  if (v != 0 && (exponent < -4 || exponent >= 16)) {
    j.text_ = sci;
    return j;
  }
  const auto fixed = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  SM_CHECK(fixed.ec == std::errc()) << "cannot format the float " << v;
  j.text_.assign(buf, fixed.ptr);
  if (j.text_.find('.') == std::string::npos) j.text_ += ".0";
  return j;
}

Json Json::Integer(int64_t v) {
  Json j;
  j.type_ = Type::kNumber;
  j.text_ = std::to_string(v);
  return j;
}

Json Json::String(std::string s) {
  Json j;
  j.type_ = Type::kString;
  j.text_ = std::move(s);
  return j;
}

Json Json::Array(std::vector<Json> items) {
  Json j;
  j.type_ = Type::kArray;
  j.items_ = std::move(items);
  return j;
}

Json Json::Object(std::vector<std::pair<std::string, Json>> members) {
  Json j;
  j.type_ = Type::kObject;
  j.members_ = std::move(members);
  return j;
}

bool Json::AsBool(std::string_view what) const {
  SM_CHECK(type_ == Type::kBool) << what << " must be a boolean, got " << TypeName(type_);
  return bool_;
}

double Json::AsDouble(std::string_view what) const {
  SM_CHECK(type_ == Type::kNumber) << what << " must be a number, got " << TypeName(type_);
  return std::strtod(text_.c_str(), nullptr);
}

int64_t Json::AsInt(std::string_view what) const {
  SM_CHECK(type_ == Type::kNumber) << what << " must be an integer, got " << TypeName(type_);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text_.data(), text_.data() + text_.size(), v);
  SM_CHECK(ec == std::errc() && end == text_.data() + text_.size())
      << what << " must be an integer that fits 64 bits, got " << text_;
  return v;
}

const std::string& Json::AsString(std::string_view what) const {
  SM_CHECK(type_ == Type::kString) << what << " must be a string, got " << TypeName(type_);
  return text_;
}

const std::vector<Json>& Json::AsArray(std::string_view what) const {
  SM_CHECK(type_ == Type::kArray) << what << " must be an array, got " << TypeName(type_);
  return items_;
}

const std::vector<std::pair<std::string, Json>>& Json::AsObject(std::string_view what) const {
  SM_CHECK(type_ == Type::kObject) << what << " must be an object, got " << TypeName(type_);
  return members_;
}

const Json* Json::Find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& [k, v] : members_)
    if (k == key) return &v;
  return nullptr;
}

const Json& Json::Require(std::string_view key, const std::string& what) const {
  const Json* m = Find(key);
  SM_CHECK(m != nullptr) << what << " lacks \"" << key << "\"";
  return *m;
}

Json& Json::Set(std::string key, Json value) {
  SM_CHECK(type_ == Type::kObject) << "Json::Set on " << TypeName(type_);
  members_.emplace_back(std::move(key), std::move(value));
  return members_.back().second;
}

Json& Json::Put(std::string_view key, Json value) {
  SM_CHECK(type_ == Type::kObject) << "Json::Put on " << TypeName(type_);
  for (auto& [k, v] : members_)
    if (k == key) return v = std::move(value);
  return Set(std::string(key), std::move(value));
}

void Json::Push(Json value) {
  SM_CHECK(type_ == Type::kArray) << "Json::Push on " << TypeName(type_);
  items_.push_back(std::move(value));
}

namespace {

void DumpString(const std::string& s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// indent 0: compact. Otherwise nested members start a new line `indent` spaces deeper than
// their container (`depth` levels in); empty arrays and objects stay "[]" and "{}".
void DumpTo(const Json& j, std::string& out, int indent, int depth) {
  auto newline = [&](int level) {
    if (indent == 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent) * level, ' ');
  };
  switch (j.type()) {
    case Json::Type::kNull:
      out += "null";
      break;
    case Json::Type::kBool:
      out += j.AsBool("") ? "true" : "false";
      break;
    case Json::Type::kNumber:
      out += j.Dump();
      break;
    case Json::Type::kString:
      DumpString(j.AsString(""), out);
      break;
    case Json::Type::kArray: {
      out += '[';
      bool first = true;
      for (const Json& v : j.AsArray("")) {
        if (!first) out += ',';
        first = false;
        newline(depth + 1);
        DumpTo(v, out, indent, depth + 1);
      }
      if (!first) newline(depth);
      out += ']';
      break;
    }
    case Json::Type::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : j.AsObject("")) {
        if (!first) out += ',';
        first = false;
        newline(depth + 1);
        DumpString(k, out);
        out += indent == 0 ? ":" : ": ";
        DumpTo(v, out, indent, depth + 1);
      }
      if (!first) newline(depth);
      out += '}';
      break;
    }
  }
}

}  // namespace

std::string Json::Dump(int indent) const {
  if (type_ == Type::kNumber) return text_;
  std::string out;
  DumpTo(*this, out, indent, 0);
  return out;
}

class JsonParser {
 public:
  JsonParser(std::string_view text, std::string_view what) : s_(text), what_(what) {}

  Json Document() {
    Json v = Value(0);
    Space();
    Expect(pos_ == s_.size(), "unexpected text after the JSON value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 128;

  void Expect(bool ok, const char* problem) {
    SM_CHECK(ok) << what_ << ": " << problem << " at byte " << pos_;
  }
  void Space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool Eat(char c) {
    Space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Word(std::string_view w) {
    if (s_.substr(pos_, w.size()) == w) {
      pos_ += w.size();
      return true;
    }
    return false;
  }

  Json Value(int depth) {
    Expect(depth < kMaxDepth, "nesting too deep");
    Space();
    Expect(pos_ < s_.size(), "unexpected end of input");
    const char c = s_[pos_];
    if (c == '{') return ObjectValue(depth);
    if (c == '[') return ArrayValue(depth);
    if (c == '"') return Json::String(StringValue());
    if (Word("true")) return Json::Bool(true);
    if (Word("false")) return Json::Bool(false);
    if (Word("null")) return Json();
    return NumberValue();
  }

  Json ObjectValue(int depth) {
    ++pos_;
    Json obj = Json::Object();
    std::unordered_set<std::string> keys;
    if (Eat('}')) return obj;
    do {
      Space();
      Expect(pos_ < s_.size() && s_[pos_] == '"', "expected a string key");
      const size_t key_pos = pos_;
      std::string key = StringValue();
      SM_CHECK(keys.insert(key).second)
          << what_ << ": duplicate key \"" << key << "\" at byte " << key_pos;
      Expect(Eat(':'), "expected ':'");
      obj.members_.emplace_back(std::move(key), Value(depth + 1));
    } while (Eat(','));
    Expect(Eat('}'), "expected ',' or '}'");
    return obj;
  }

  Json ArrayValue(int depth) {
    ++pos_;
    Json arr = Json::Array();
    if (Eat(']')) return arr;
    do arr.items_.push_back(Value(depth + 1));
    while (Eat(','));
    Expect(Eat(']'), "expected ',' or ']'");
    return arr;
  }

  Json NumberValue() {
    const size_t start = pos_;
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    auto digits = [&] {
      const size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - d;
    };
    const size_t int_start = pos_;
    Expect(digits() > 0, "expected a value");
    Expect(!(s_[int_start] == '0' && pos_ - int_start > 1), "leading zero in a number");
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      Expect(digits() > 0, "expected digits after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      Expect(digits() > 0, "expected digits in the exponent");
    }
    Json j;
    j.type_ = Json::Type::kNumber;
    j.text_ = std::string(s_.substr(start, pos_ - start));
    return j;
  }

  uint32_t Hex4() {
    Expect(pos_ + 4 <= s_.size(), "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        Expect(false, "bad hex digit in \\u escape");
    }
    return v;
  }

  std::string StringValue() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      Expect(pos_ < s_.size(), "unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      Expect(static_cast<unsigned char>(c) >= 0x20, "control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      Expect(pos_ < s_.size(), "unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = Hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            Expect(Word("\\u"), "unpaired surrogate in \\u escape");
            const uint32_t lo = Hex4();
            Expect(lo >= 0xDC00 && lo <= 0xDFFF, "unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else {
            Expect(cp < 0xDC00 || cp > 0xDFFF, "unpaired surrogate in \\u escape");
          }
          AppendUtf8(out, cp);
          break;
        }
        default:
          Expect(false, "unknown escape in a string");
      }
    }
  }

  std::string_view s_;
  std::string_view what_;
  size_t pos_ = 0;
};

Json Json::Parse(std::string_view text, std::string_view what) {
  return JsonParser(text, what).Document();
}

}  // namespace seqmesh
