// A small JSON value with a strict parser and a writer: enough for safetensors headers,
// Hugging Face config.json files, manifests and metrics lines. Objects keep their key order and
// reject duplicate keys; numbers keep their text, so 64-bit integers survive exactly and a parsed
// document is written back with every number as it was read (1e-06 stays 1e-06).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace seqmesh {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Json() = default;
  static Json Bool(bool b);
  static Json Number(double v);  // %.17g: the double exactly
  // The shortest digits that read back as the float `v`, laid out as Python's repr (1e-05f is
  // "1e-05", not the double nearest to it, 9.9999997473787516e-06; 5e5f is "500000.0"): how a
  // config's float field is written.
  static Json Float(float v);
  static Json Integer(int64_t v);
  static Json String(std::string s);
  static Json Array(std::vector<Json> items = {});
  static Json Object(std::vector<std::pair<std::string, Json>> members = {});

  // Parses one JSON document (surrounding whitespace allowed). Errors name `what` (a file name)
  // and the byte offset.
  static Json Parse(std::string_view text, std::string_view what = "JSON");

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_object() const { return type_ == Type::kObject; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_number() const { return type_ == Type::kNumber; }

  // Typed access; a wrong type is an error naming `what` (the field being read).
  bool AsBool(std::string_view what) const;
  double AsDouble(std::string_view what) const;
  int64_t AsInt(std::string_view what) const;  // exact integers only
  const std::string& AsString(std::string_view what) const;
  const std::vector<Json>& AsArray(std::string_view what) const;
  const std::vector<std::pair<std::string, Json>>& AsObject(std::string_view what) const;

  // Object member or nullptr.
  const Json* Find(std::string_view key) const;
  // Object member; throws naming `what` and the key when it is missing.
  const Json& Require(std::string_view key, const std::string& what) const;
  // Appends a member to an object (no duplicate check: the writer's caller owns the keys).
  Json& Set(std::string key, Json value);
  // Replaces the member `key` in place (keeping its position), or appends it when absent.
  Json& Put(std::string_view key, Json value);
  void Push(Json value);

  // Compact text (no spaces), keys in insertion order; with indent > 0, one member or item a
  // line, as Python's json.dumps(indent=indent) writes it (Hugging Face's config.json layout).
  std::string Dump(int indent = 0) const;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  std::string text_;  // number text or string value
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> members_;
  friend class JsonParser;
};

}  // namespace seqmesh
