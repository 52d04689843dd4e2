#include "runtime/run_config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <variant>
#define TOML_EXCEPTIONS 1
#include <toml++/toml.h>

#include "runtime/check.h"
#include "runtime/text.h"

namespace seqmesh {
namespace {

// Checks that a config file is the TOML a seqmesh config needs, before toml++ sees it: [section]
// headers and `key = value` lines, each value one string, number or boolean, with comments and
// blank lines. Debian's toml++ 3.3.0 cannot take some other inputs safely (found by fuzzing,
// tests/fuzz/fuzz_run_config.cc): a header whose name starts wrong (`[\x01a]`, `[=a]`, `[[[a]]]`,
// `[` then a newline) or an array that starts wrong (`[}`) breaks one of its assertions, which
// the shared library, built without them, assumes instead (undefined behaviour), and some
// non-ASCII code points outside strings (é, U+FEDF: a file starting EF BB 9F) reach
// TOML_UNREACHABLE. So the parser sees only this small grammar, ASCII outside strings and
// comments; every refusal names the line and column.
class TomlScreen {
 public:
  TomlScreen(std::string_view text, std::string where) : s_(text), where_(std::move(where)) {}

  void Check() {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") {
      i_ = 3;  // a UTF-8 byte-order mark
    } else if (s_.substr(0, 2) == "\xEF\xBB") {
      SM_CHECK(false) << where_ << " starts with the bytes EF BB but not EF BB BF, a broken "
                      << "UTF-8 byte-order mark: save it as UTF-8 text";
    }
    while (i_ < s_.size()) Line();
  }

 private:
  // A config's grammar, for the messages.
  static constexpr const char* kGrammar =
      " (a seqmesh config is [section] headers and key = value lines, each value a string, a "
      "number, true/false or a one-line array of strings)";

  int Peek() const { return i_ < s_.size() ? static_cast<unsigned char>(s_[i_]) : -1; }
  void Next() {
    if ((static_cast<unsigned char>(s_[i_]) & 0xC0) != 0x80) ++column_;  // characters, not bytes
    ++i_;
  }
  [[noreturn]] void Fail(const std::string& what, bool grammar = true) const {
    const int c = Peek();
    if (c != '\n' && c != '\r') Printable();  // a control character says so
    SM_CHECK(false) << where_ << " line " << line_ << ", column " << column_ << ": " << what
                    << (grammar ? kGrammar : "");
    __builtin_unreachable();
  }
  // A character allowed in strings and comments: any but control characters other than tab.
  void Printable() const {
    const int c = Peek();
    if (c != -1 && ((c < 0x20 && c != '\t') || c == 0x7f)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", c);
      SM_CHECK(false) << where_ << " line " << line_ << ", column " << column_
                      << ": control character " << hex
                      << " (TOML allows only tab, newline and carriage return; inside a string "
                         "write it as an escape such as \\u0001)";
    }
  }
  void Spaces() {
    while (Peek() == ' ' || Peek() == '\t') Next();
  }
  static bool Bare(int c) { return c >= 0 && (std::isalnum(c) || c == '_' || c == '-'); }

  // The rest of a line after its content: spaces, a comment, the line break.
  void End() {
    Spaces();
    if (Peek() == '#') {
      Next();
      while (Peek() != -1 && Peek() != '\n' && !(Peek() == '\r' && NextIs('\n'))) {
        Printable();
        Next();
      }
    }
    if (Peek() == '\r' && NextIs('\n')) Next();
    if (Peek() == '\n') {
      ++i_, ++line_, column_ = 1;
    } else if (Peek() != -1) {
      Fail(Peek() >= 0x80 ? "a non-ASCII character outside a string or comment (quote it)"
                          : std::string("unexpected '") + static_cast<char>(Peek()) + "'");
    }
  }
  bool NextIs(char c) const { return i_ + 1 < s_.size() && s_[i_ + 1] == c; }

  void Line() {
    Spaces();
    if (Peek() == '[') {
      Next();
      Spaces();
      if (Peek() == '[') Fail("an array of tables ([[...]])");
      Name("a table header's name must follow '[' (a letter, digit, '_', '-' or a quoted name)");
      if (Peek() != ']') Fail("a table header must end with ']'");
      Next();
    } else if (Peek() != '#' && Peek() != '\n' && Peek() != '\r' && Peek() != -1) {
      Name("a key must start a line (a letter, digit, '_', '-' or a quoted name)");
      if (Peek() != '=') Fail("'=' must follow the key");
      Next();
      Spaces();
      Value();
    }
    End();
  }
  // A key or header name: segments joined by dots, each bare or quoted (single-line).
  void Name(const char* what) {
    while (true) {
      Spaces();
      if (Peek() == '"' || Peek() == '\'') {
        String();
      } else if (Bare(Peek())) {
        while (Bare(Peek())) Next();
      } else {
        Fail(Peek() >= 0x80 ? "a non-ASCII character outside a string or comment (quote it)"
                            : what);
      }
      Spaces();
      if (Peek() != '.') return;
      Next();
    }
  }
  void Value() {
    const int c = Peek();
    if (c == '"' || c == '\'') {
      String();
    } else if (c == '[') {
      // A one-line array of strings (lora.targets); nothing nests.
      Next();
      Spaces();
      while (Peek() != ']') {
        if (Peek() != '"' && Peek() != '\'') Fail("an array holds strings only, on one line");
        String();
        Spaces();
        if (Peek() == ',') {
          Next();
          Spaces();
        } else if (Peek() != ']') {
          Fail("an array's strings are separated by ',' and it ends with ']' on its line");
        }
      }
      Next();
    } else if (c == '{') {
      Fail("inline tables are not config values");
    } else if (c >= 0 && (std::isalnum(c) || c == '+' || c == '-')) {
      // A number, true/false, inf or nan: one token of these characters; toml++ reads it.
      while (Peek() >= 0 && (std::isalnum(Peek()) || std::strchr("+-._:", Peek()))) Next();
    } else {
      Fail(c == -1 || c == '\n' || c == '\r' ? "a value must follow '='"
           : c >= 0x80                       ? "a non-ASCII character outside a string (quote it)"
                       : std::string("a value cannot start with '") + static_cast<char>(c) + "'");
    }
  }
  // A single-line basic ("...", with escapes) or literal ('...') string.
  void String() {
    const int quote = Peek();
    if (NextIs(static_cast<char>(quote)) && i_ + 2 < s_.size() && s_[i_ + 2] == s_[i_])
      Fail("multi-line strings are not config values");
    Next();
    while (Peek() != quote) {
      if (Peek() == -1 || Peek() == '\n' || Peek() == '\r') Fail("a string must end on its line");
      Printable();
      if (quote == '"' && Peek() == '\\') {
        Next();
        const int e = Peek();
        if (e == -1 || !std::strchr("btnfr\"\\uU", e))
          Fail(
              "a string's backslash must start an escape: \\b \\t \\n \\f \\r \\\" \\\\ "
              "\\uXXXX or \\UXXXXXXXX",
              false);
      }
      Next();
    }
    Next();
  }

  std::string_view s_;
  std::string where_;
  size_t i_ = 0;
  int64_t line_ = 1, column_ = 1;
};

void ScreenToml(std::string_view text, const std::string& where) {
  TomlScreen(text, where).Check();
}

// A key whose value is one of a closed set of names, stored as an enum.
struct Choice {
  std::function<int()> get;
  std::function<void(int)> set;
  const std::vector<std::string>* names;
};
template <typename E>
Choice ChoiceOf(E* e, const std::vector<std::string>& names) {
  return {[e] { return static_cast<int>(*e); }, [e](int v) { *e = static_cast<E>(v); }, &names};
}

// "a, b or c"
std::string OneOf(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return out;
}

// One key of the schema: where it lives in RunConfig and its type.
using Slot =
    std::variant<int64_t*, double*, float*, bool*, std::string*, Choice, std::vector<std::string>*>;

struct Field {
  std::string name;  // "section.key"
  Slot slot;
};

std::vector<Field> Schema(RunConfig& c) {
  return {
      {"model.vocab", &c.model.vocab},
      {"model.hidden", &c.model.hidden},
      {"model.layers", &c.model.layers},
      {"model.heads", &c.model.heads},
      {"model.kv_heads", &c.model.kv_heads},
      {"model.ffn", &c.model.ffn},
      {"model.rope_theta", &c.model.rope_theta},
      {"model.norm_eps", &c.model.norm_eps},
      {"model.tie_embeddings", &c.model.tie_embeddings},
      {"model.rope_scaling", ChoiceOf(&c.model.rope_scaling.type, RopeTypeNames())},
      {"model.rope_factor", &c.model.rope_scaling.factor},
      {"model.rope_low_freq_factor", &c.model.rope_scaling.low_freq_factor},
      {"model.rope_high_freq_factor", &c.model.rope_scaling.high_freq_factor},
      {"model.rope_original_max_positions", &c.model.rope_scaling.original_max_positions},
      {"training.steps", &c.training.steps},
      {"training.global_batch_tokens", &c.training.global_batch_tokens},
      {"training.micro_batch_tokens", &c.training.micro_batch_tokens},
      {"training.seed", &c.training.seed},
      {"training.threads", &c.training.threads},
      {"training.log_interval", &c.training.log_interval},
      {"training.eval_interval", &c.training.eval_interval},
      {"training.grad_clip", &c.training.grad_clip},
      {"training.checkpoint_activations",
       ChoiceOf(&c.training.checkpoint_activations, CheckpointModeNames())},
      {"training.activation_memory", &c.training.activation_memory},
      {"training.precision", ChoiceOf(&c.training.precision, PrecisionNames())},
      {"training.nonfinite", ChoiceOf(&c.training.nonfinite, NonFiniteNames())},
      {"training.nonfinite_limit", &c.training.nonfinite_limit},
      {"training.device", ChoiceOf(&c.training.device, DeviceNames())},
      {"optimizer.lr", &c.optimizer.lr},
      {"optimizer.min_lr", &c.optimizer.min_lr},
      {"optimizer.warmup_steps", &c.optimizer.warmup_steps},
      {"optimizer.beta1", &c.optimizer.beta1},
      {"optimizer.beta2", &c.optimizer.beta2},
      {"optimizer.eps", &c.optimizer.eps},
      {"optimizer.weight_decay", &c.optimizer.weight_decay},
      {"data.path", &c.data.path},
      {"data.validation_fraction", &c.data.validation_fraction},
      {"checkpoint.dir", &c.checkpoint.dir},
      {"checkpoint.interval", &c.checkpoint.interval},
      {"checkpoint.keep", &c.checkpoint.keep},
      {"checkpoint.export_dtype", ChoiceOf(&c.checkpoint.export_dtype, ExportDTypeNames())},
      {"distributed.planner", ChoiceOf(&c.distributed.planner, PlannerNames())},
      {"distributed.cost", &c.distributed.cost},
      {"distributed.context", &c.distributed.context},
      {"distributed.refit", ChoiceOf(&c.distributed.refit, RefitNames())},
      {"distributed.heartbeat_timeout_s", &c.distributed.heartbeat_timeout_s},
      {"distributed.comm_deadline_s", &c.distributed.comm_deadline_s},
      {"distributed.offload", &c.distributed.offload},
      {"offload.optimizer", ChoiceOf(&c.offload.optimizer, OffloadDeviceNames())},
      {"offload.nvme_path", &c.offload.nvme_path},
      {"offload.pin_memory", &c.offload.pin_memory},
      {"offload.buffer_count", &c.offload.buffer_count},
      {"offload.sub_group_size", &c.offload.sub_group_size},
      {"offload.block_size", &c.offload.block_size},
      {"offload.queue_depth", &c.offload.queue_depth},
      {"offload.activations", ChoiceOf(&c.offload.activations, OffloadDeviceNames())},
      {"offload.parameters", ChoiceOf(&c.offload.parameters, OffloadDeviceNames())},
      {"offload.prefetch_depth", &c.offload.prefetch_depth},
      {"metrics.jsonl", &c.metrics.jsonl},
      {"metrics.tensorboard", &c.metrics.tensorboard},
      {"metrics.trace", &c.metrics.trace},
      {"lora.rank", &c.lora.rank},
      {"lora.alpha", &c.lora.alpha},
      {"lora.dropout", &c.lora.dropout},
      {"lora.targets", &c.lora.targets},
  };
}

// Names other tools use for keys of ours (Hugging Face, Megatron, nanoGPT), by last component.
const std::vector<std::pair<std::string, std::string>>& Aliases() {
  static const std::vector<std::pair<std::string, std::string>> aliases = {
      {"learning_rate", "optimizer.lr"},
      {"min_learning_rate", "optimizer.min_lr"},
      {"warmup", "optimizer.warmup_steps"},
      {"lr_warmup_iters", "optimizer.warmup_steps"},
      {"batch_size", "training.global_batch_tokens"},
      {"global_batch_size", "training.global_batch_tokens"},
      {"micro_batch_size", "training.micro_batch_tokens"},
      {"seq_len", "training.micro_batch_tokens"},
      {"seq_length", "training.micro_batch_tokens"},
      {"max_seq_len", "training.micro_batch_tokens"},
      {"block_size", "training.micro_batch_tokens"},
      {"max_steps", "training.steps"},
      {"train_iters", "training.steps"},
      {"max_iters", "training.steps"},
      {"num_layers", "model.layers"},
      {"n_layer", "model.layers"},
      {"num_hidden_layers", "model.layers"},
      {"hidden_size", "model.hidden"},
      {"n_embd", "model.hidden"},
      {"num_attention_heads", "model.heads"},
      {"n_head", "model.heads"},
      {"num_key_value_heads", "model.kv_heads"},
      {"intermediate_size", "model.ffn"},
      {"vocab_size", "model.vocab"},
      {"clip_grad", "training.grad_clip"},
      {"grad_norm_clip", "training.grad_clip"},
      {"max_grad_norm", "training.grad_clip"},
      {"save_interval", "checkpoint.interval"},
      {"eval_interval", "training.eval_interval"},
      {"data_path", "data.path"},
      {"device", "offload.optimizer"},  // DeepSpeed's offload_optimizer.device
      {"offload_optimizer", "offload.optimizer"},
      {"io_queue_depth", "offload.queue_depth"},
  };
  return aliases;
}

std::string Closest(const std::string& name, const std::vector<std::string>& valid) {
  const std::string last =
      name.substr(name.find('.') == std::string::npos ? 0 : name.rfind('.') + 1);
  for (const auto& [other, ours] : Aliases())
    if (last == other && std::find(valid.begin(), valid.end(), ours) != valid.end()) return ours;
  return ClosestName(name, valid);
}

const char* TypeName(const Slot& s) {
  switch (s.index()) {
    case 0:
      return "an integer";
    case 1:
    case 2:
      return "a number";
    case 3:
      return "a boolean";
    case 6:
      return "an array of strings";
    default:
      return "a string";  // a Choice is a string too (its names are checked after the type)
  }
}

const char* NodeTypeName(const toml::node& n) {
  if (n.is_integer()) return "an integer";
  if (n.is_floating_point()) return "a number";
  if (n.is_boolean()) return "a boolean";
  if (n.is_string()) return "a string";
  if (n.is_table()) return "a table";
  if (n.is_array()) return "an array";
  return "a date or time";
}

// Stores node into the field; `where` names the source (file or command line).
void Assign(const Field& f, const toml::node& n, const std::string& where) {
  if (const Choice* choice = std::get_if<Choice>(&f.slot)) {
    auto v = n.value_exact<std::string>();
    // A choice named "true" and "false" (training.checkpoint_activations) takes TOML booleans.
    const std::vector<std::string>& choices = *choice->names;
    const bool booleans = std::find(choices.begin(), choices.end(), "true") != choices.end();
    if (!v && n.is_boolean() && booleans) v = *n.value_exact<bool>() ? "true" : "false";
    SM_CHECK(v) << where << ": " << f.name << " must be "
                << (booleans ? "a boolean or a string" : "a string") << ", got " << NodeTypeName(n);
    const std::vector<std::string>& names = *choice->names;
    const auto it = std::find(names.begin(), names.end(), *v);
    SM_CHECK(it != names.end()) << f.name << " must be " << OneOf(names) << ", got \"" << *v
                                << "\"";
    choice->set(static_cast<int>(it - names.begin()));
    return;
  }
  bool ok = true;
  std::visit(
      [&](auto p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, Choice>) {
        } else if constexpr (std::is_same_v<T, int64_t>) {
          if (auto v = n.value_exact<int64_t>())
            *p = *v;
          else
            ok = false;
        } else if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
          if (n.is_number())
            *p = static_cast<T>(*n.value<double>());
          else
            ok = false;
        } else if constexpr (std::is_same_v<T, bool>) {
          if (auto v = n.value_exact<bool>())
            *p = *v;
          else
            ok = false;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          const toml::array* a = n.as_array();
          ok = a != nullptr;
          std::vector<std::string> items;
          for (size_t i = 0; ok && i < a->size(); ++i) {
            const auto v = (*a)[i].value_exact<std::string>();
            SM_CHECK(v) << where << ": " << f.name << "[" << i << "] must be a string, got "
                        << NodeTypeName((*a)[i]);
            items.push_back(*v);
          }
          if (ok) *p = std::move(items);
        } else {
          if (auto v = n.value_exact<std::string>())
            *p = *v;
          else
            ok = false;
        }
      },
      f.slot);
  SM_CHECK(ok) << where << ": " << f.name << " must be " << TypeName(f.slot) << ", got "
               << NodeTypeName(n);
}

}  // namespace

const std::vector<std::string>& PlannerNames() {
  static const std::vector<std::string> names = {"balanced", "naive", "pow2", "static"};
  return names;
}
const std::vector<std::string>& PrecisionNames() {
  static const std::vector<std::string> names = {"fp32", "bf16"};
  return names;
}
const std::vector<std::string>& CheckpointModeNames() {
  static const std::vector<std::string> names = {"false", "true", "selective"};
  return names;
}
const std::vector<std::string>& NonFiniteNames() {
  static const std::vector<std::string> names = {"stop", "skip"};
  return names;
}
const std::vector<std::string>& DeviceNames() {
  static const std::vector<std::string> names = {std::string(DeviceName(Device::kCpu)),
                                                 std::string(DeviceName(Device::kCuda))};
  return names;
}
const std::vector<std::string>& OffloadDeviceNames() {
  static const std::vector<std::string> names = {"none", "cpu", "nvme"};
  return names;
}
const std::string& Name(OffloadDevice device) {
  return OffloadDeviceNames().at(static_cast<size_t>(device));
}
const std::vector<std::string>& RefitNames() {
  static const std::vector<std::string> names = {"predict", "plan", "off"};
  return names;
}
const std::string& Name(PlannerKind planner) {
  return PlannerNames().at(static_cast<size_t>(planner));
}
const std::string& Name(RefitMode refit) { return RefitNames().at(static_cast<size_t>(refit)); }

namespace {
int IndexOfName(const std::vector<std::string>& names, const std::string& name, const char* what) {
  const auto it = std::find(names.begin(), names.end(), name);
  SM_CHECK(it != names.end()) << what << " must be " << OneOf(names) << ", got \"" << name << "\"";
  return static_cast<int>(it - names.begin());
}
}  // namespace

PlannerKind PlannerNamed(const std::string& name) {
  return static_cast<PlannerKind>(IndexOfName(PlannerNames(), name, "distributed.planner"));
}
RefitMode RefitNamed(const std::string& name) {
  return static_cast<RefitMode>(IndexOfName(RefitNames(), name, "distributed.refit"));
}

RunConfig RunConfig::Load(const std::string& path, const std::vector<std::string>& overrides) {
  return FromText(nullptr, path, overrides);
}

RunConfig RunConfig::Parse(const std::string& text, const std::string& source) {
  return FromText(&text, source, {});
}

RunConfig RunConfig::FromText(const std::string* text, const std::string& path,
                              const std::vector<std::string>& overrides) {
  RunConfig c;
  // Small defaults that train on one core in seconds (examples/ overrides them).
  c.model = {256, 64, 2, 4, 2, 128, 10000.0f, 1e-5f, false, {}};
  const std::vector<Field> schema = Schema(c);
  std::vector<std::string> names, sections;
  for (const Field& f : schema) {
    names.push_back(f.name);
    const std::string s = f.name.substr(0, f.name.find('.'));
    if (std::find(sections.begin(), sections.end(), s) == sections.end()) sections.push_back(s);
  }
  auto field = [&](const std::string& name, const std::string& where) -> const Field& {
    for (const Field& f : schema)
      if (f.name == name) return f;
    SM_CHECK(false) << where << ": unknown key '" << name << "'; did you mean '"
                    << Closest(name, names) << "'?";
    __builtin_unreachable();
  };

  if (!text && !path.empty()) {
    // The OS's reason, before the TOML parser turns it into "line 0".
    SM_CHECK(!std::filesystem::is_directory(path))
        << "the config file '" << path << "' is a directory; pass a TOML file such as " << path
        << "/config.toml";
    std::ifstream probe(path);
    SM_CHECK(probe.good()) << "cannot read the config file '" << path
                           << "': " << std::strerror(errno);
  }
  if (text || !path.empty()) {
    std::string contents;
    if (!text) {
      std::ifstream in(path, std::ios::binary);
      contents.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      SM_CHECK(!in.bad()) << "cannot read the config file '" << path
                          << "': " << std::strerror(errno);
    }
    const std::string& source = text ? *text : contents;
    ScreenToml(source, "'" + path + "'");
    toml::table file;
    try {
      file = toml::parse(source, path);
    } catch (const toml::parse_error& e) {
      SM_CHECK(false) << "'" << path << "' line " << e.source().begin.line << ": "
                      << e.description();
    }
    for (const auto& [section, node] : file) {
      const std::string s(section.str());
      SM_CHECK(node.is_table()) << "'" << path << "': top-level key '" << s
                                << "' must be a section such as [" << Closest(s, sections) << "]";
      SM_CHECK(std::find(sections.begin(), sections.end(), s) != sections.end())
          << "'" << path << "': unknown section [" << s << "]; did you mean ["
          << Closest(s, sections) << "]?";
      for (const auto& [key, value] : *node.as_table()) {
        const std::string name = s + "." + std::string(key.str());
        Assign(field(name, "'" + path + "'"), value, "'" + path + "'");
      }
    }
  }
  for (std::string o : overrides) {
    if (o.rfind("--", 0) == 0) o = o.substr(2);
    const size_t eq = o.find('=');
    SM_CHECK(eq != std::string::npos) << "override '" << o << "' must look like section.key=value";
    const std::string name = o.substr(0, eq), text = o.substr(eq + 1);
    const Field& f = field(name, "command line");
    // The value is TOML (100, 3e-4, true, "x"); a bare word is taken as a string.
    for (size_t k = 0; k < text.size(); ++k) {
      const auto c = static_cast<unsigned char>(text[k]);
      SM_CHECK((c >= 0x20 || c == '\t') && c != 0x7f)
          << "command line --" << name << ": control character " << static_cast<int>(c)
          << " at byte " << k + 1;
    }
    toml::table t;
    try {
      ScreenToml("v = " + text, "command line --" + name);
      t = toml::parse("v = " + text);
    } catch (const Error&) {
      t = toml::table{{"v", text}};  // not one of the screened values
    } catch (const toml::parse_error&) {
      t = toml::table{{"v", text}};
    }
    Assign(f, *t.get("v"), "command line --" + name);
  }
  c.Validate();
  return c;
}

std::string RunConfig::ToToml() const {
  RunConfig copy = *this;
  toml::table root;
  for (const Field& f : Schema(copy)) {
    const size_t dot = f.name.find('.');
    const std::string s = f.name.substr(0, dot), k = f.name.substr(dot + 1);
    if (!root.contains(s)) root.insert(s, toml::table{});
    toml::table& t = *root[s].as_table();
    std::visit(
        [&](auto p) {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, Choice>) {
            const std::string& name = (*p.names)[p.get()];
            if (name == "true" || name == "false")
              t.insert(k, name == "true");
            else
              t.insert(k, name);
          } else if constexpr (std::is_same_v<T, float>)
            t.insert(k, static_cast<double>(*p));
          else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            toml::array a;
            for (const std::string& item : *p) a.push_back(item);
            t.insert(k, std::move(a));
          } else
            t.insert(k, *p);
        },
        f.slot);
  }
  std::ostringstream os;
  os << root;
  return os.str() + "\n";
}

namespace {

// A slot's type for help texts and its value as TOML writes it.
std::pair<std::string, std::string> TypeAndValue(const Slot& slot) {
  std::string type;
  std::ostringstream v;
  std::visit(
      [&](auto p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, Choice>) {
          type = "one of " + OneOf(*p.names);
          const std::string& name = (*p.names)[p.get()];
          if (name == "true" || name == "false")
            v << name;  // written as a TOML boolean
          else
            v << '"' << name << '"';
        } else if constexpr (std::is_same_v<T, std::string>) {
          type = "string";
          v << '"' << *p << '"';
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          type = "array of strings";
          v << '[';
          for (size_t i = 0; i < p->size(); ++i) v << (i ? ", " : "") << '"' << (*p)[i] << '"';
          v << ']';
        } else if constexpr (std::is_same_v<T, bool>) {
          type = "boolean";
          v << (*p ? "true" : "false");
        } else if constexpr (std::is_same_v<T, int64_t>) {
          type = "integer";
          v << *p;
        } else {
          type = "number";
          v << *p;
        }
      },
      slot);
  return {type, v.str()};
}

}  // namespace

std::vector<ConfigKey> RunConfig::Keys() {
  RunConfig defaults = Load("");
  std::vector<ConfigKey> out;
  for (const Field& f : Schema(defaults)) {
    auto [type, value] = TypeAndValue(f.slot);
    out.push_back({f.name, type, value});
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> RunConfig::Values() const {
  RunConfig copy = *this;
  std::vector<std::pair<std::string, std::string>> out;
  for (const Field& f : Schema(copy)) out.emplace_back(f.name, TypeAndValue(f.slot).second);
  return out;
}

void RunConfig::Validate() const {
  model.Validate();
  const TrainingConfig& t = training;
  // Upper bounds: counts no run can reach (2^62 steps was accepted), and token counts that must
  // fit the int32 offsets of a micro-batch and the sampler's arithmetic.
  constexpr int64_t kMaxSteps = int64_t{1} << 40, kMaxMicro = int64_t{1} << 30,
                    kMaxGlobal = int64_t{1} << 40, kMaxThreads = 4096;
  SM_CHECK(t.steps >= 1) << "training.steps must be >= 1, got " << t.steps;
  SM_CHECK(t.steps <= kMaxSteps) << "training.steps must be at most 2^40, got " << t.steps;
  SM_CHECK(t.micro_batch_tokens >= 1)
      << "training.micro_batch_tokens must be >= 1, got " << t.micro_batch_tokens;
  SM_CHECK(t.micro_batch_tokens <= kMaxMicro)
      << "training.micro_batch_tokens must be at most 2^30, got " << t.micro_batch_tokens;
  SM_CHECK(t.global_batch_tokens <= kMaxGlobal)
      << "training.global_batch_tokens must be at most 2^40, got " << t.global_batch_tokens;
  SM_CHECK(t.threads <= kMaxThreads)
      << "training.threads must be at most " << kMaxThreads << ", got " << t.threads;
  SM_CHECK(checkpoint.keep <= (int64_t{1} << 20))
      << "checkpoint.keep must be at most 2^20, got " << checkpoint.keep;
  SM_CHECK(t.global_batch_tokens >= t.micro_batch_tokens)
      << "training.global_batch_tokens (" << t.global_batch_tokens
      << ") must be at least training.micro_batch_tokens (" << t.micro_batch_tokens << ")";
  SM_CHECK(t.threads >= 1) << "training.threads must be >= 1, got " << t.threads;
  SM_CHECK(t.nonfinite_limit >= 1)
      << "training.nonfinite_limit must be >= 1, got " << t.nonfinite_limit;
  SM_CHECK(t.log_interval >= 1) << "training.log_interval must be >= 1, got " << t.log_interval;
  SM_CHECK(t.eval_interval >= 0) << "training.eval_interval must be >= 0, got " << t.eval_interval;
  SM_CHECK(data.validation_fraction >= 0 && data.validation_fraction < 1)
      << "data.validation_fraction must be in [0, 1), got " << data.validation_fraction;
  SM_CHECK(checkpoint.keep >= 1) << "checkpoint.keep must be >= 1, got " << checkpoint.keep;
  SM_CHECK(checkpoint.interval >= 0)
      << "checkpoint.interval must be >= 0, got " << checkpoint.interval;
  const DistributedConfig& d = distributed;
  SM_CHECK(d.context >= 0) << "distributed.context must be >= 0, got " << d.context;
  SM_CHECK(d.heartbeat_timeout_s > 0)
      << "distributed.heartbeat_timeout_s must be > 0, got " << d.heartbeat_timeout_s;
  SM_CHECK(d.comm_deadline_s > 0) << "distributed.comm_deadline_s must be > 0, got "
                                  << d.comm_deadline_s;
  const OffloadConfig& o = offload;
  SM_CHECK(o.buffer_count >= 2 && o.buffer_count <= 64)
      << "offload.buffer_count must be in [2, 64], got " << o.buffer_count;
  SM_CHECK(o.sub_group_size >= 1024 && o.sub_group_size <= (int64_t{1} << 34))
      << "offload.sub_group_size must be in [1024, 2^34] elements, got " << o.sub_group_size;
  SM_CHECK(o.block_size >= 4096 && o.block_size % 4096 == 0 && o.block_size <= (int64_t{1} << 30))
      << "offload.block_size must be a multiple of 4096 bytes up to 1 GiB, got " << o.block_size;
  SM_CHECK(o.queue_depth >= 1 && o.queue_depth <= 4096)
      << "offload.queue_depth must be in [1, 4096], got " << o.queue_depth;
  SM_CHECK(o.optimizer != OffloadDevice::kNvme || !o.nvme_path.empty())
      << "offload.optimizer = \"nvme\" needs offload.nvme_path (a directory on a local disk)";
  SM_CHECK(o.activations != OffloadDevice::kNvme || !o.nvme_path.empty())
      << "offload.activations = \"nvme\" needs offload.nvme_path (a directory on a local disk)";
  if (d.offload) {
    SM_CHECK(o.activations != OffloadDevice::kNone)
        << "distributed.offload = true sends the saved inputs of a long sequence's offloaded "
           "layers to offload.activations' target, which is \"none\"; set offload.activations "
           "= \"nvme\" (or \"cpu\")";
    SM_CHECK(t.checkpoint_activations == CheckpointMode::kOff)
        << "distributed.offload = true: each micro-batch's plan says which layers offload (the "
           "rest keep their activations), so training.checkpoint_activations must be false, got "
        << (t.checkpoint_activations == CheckpointMode::kAll ? "true" : "\"selective\"");
    SM_CHECK(d.planner == PlannerKind::kBalanced || d.planner == PlannerKind::kNaive)
        << "distributed.offload = true with distributed.planner = \"" << Name(d.planner)
        << "\": that planner's rings never offload; use \"balanced\" or \"naive\"";
    SM_CHECK(model.layers >= 3)
        << "distributed.offload = true needs model.layers >= 3 (Eq. 3 offloads layers 2..l-1 of "
           "l), got "
        << model.layers;
  }
  SM_CHECK(o.activations == OffloadDevice::kNone || d.offload ||
           t.checkpoint_activations != CheckpointMode::kOff)
      << "offload.activations = \"" << Name(o.activations)
      << "\" offloads the saved inputs of checkpointed layers, but training.checkpoint_activations "
         "is false; set it to true or \"selective\"";
  SM_CHECK(o.parameters != OffloadDevice::kCpu)
      << "offload.parameters = \"cpu\" would keep the weights in pinned host memory, which on "
         "the CPU backend is the memory they are already in: use \"nvme\" (or \"none\")";
  if (o.parameters == OffloadDevice::kNvme) {
    SM_CHECK(!o.nvme_path.empty())
        << "offload.parameters = \"nvme\" needs offload.nvme_path (a directory on a local disk)";
    SM_CHECK(o.optimizer == OffloadDevice::kNvme)
        << "offload.parameters = \"nvme\" needs offload.optimizer = \"nvme\": the optimizer's "
           "master weights and moments (12 B per parameter) would otherwise stay in memory "
           "beside the 4 B per parameter offloaded";
    SM_CHECK(lora.rank == 0) << "offload.parameters = \"nvme\" with LoRA (lora.rank = " << lora.rank
                             << ") is not supported: the frozen base weights would "
                                "be offloaded with nothing to update them; set it to \"none\"";
    SM_CHECK(t.precision == Precision::kF32)
        << "offload.parameters = \"nvme\" with training.precision = \"bf16\" is not supported "
           "yet (the bf16 copy of the weights stays resident); use fp32";
  }
  SM_CHECK(o.prefetch_depth >= 0 && o.prefetch_depth <= 64)
      << "offload.prefetch_depth must be in [0, 64], got " << o.prefetch_depth;
  SM_CHECK(t.activation_memory >= 0)
      << "training.activation_memory must be >= 0 MiB (0: what the machine has left), got "
      << t.activation_memory;
  SM_CHECK(optimizer.warmup_steps <= t.steps)
      << "optimizer.warmup_steps (" << optimizer.warmup_steps << ") exceeds training.steps ("
      << t.steps << ")";
  adamw().Validate();
  schedule().Validate();
  SM_CHECK(lora.rank >= 0) << "lora.rank must be >= 0 (0: no LoRA), got " << lora.rank;
  if (lora.rank > 0) ValidateLoraTraining(lora);
}

LoraConfig RunConfig::DefaultLora() {
  LoraConfig c;
  c.rank = 0;
  c.alpha = 16;
  c.dropout = 0;
  c.targets = LoraModules();
  return c;
}

std::string RunConfig::metrics_path() const {
  return metrics.jsonl.empty() ? checkpoint.dir + "/metrics.jsonl" : metrics.jsonl;
}

std::string RunConfig::tensorboard_dir() const { return checkpoint.dir + "/tensorboard"; }
std::string RunConfig::trace_dir() const { return checkpoint.dir + "/trace"; }

AdamWConfig RunConfig::adamw() const {
  AdamWConfig a;
  a.beta1 = static_cast<float>(optimizer.beta1);
  a.beta2 = static_cast<float>(optimizer.beta2);
  a.eps = static_cast<float>(optimizer.eps);
  a.weight_decay = static_cast<float>(optimizer.weight_decay);
  return a;
}

LrSchedule RunConfig::schedule() const {
  return {static_cast<float>(optimizer.lr), static_cast<float>(optimizer.min_lr),
          optimizer.warmup_steps, training.steps};
}

}  // namespace seqmesh
