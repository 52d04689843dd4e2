#include "launch/flags.h"

#include <algorithm>
#include <iostream>
#include <sstream>

#include "launch/format.h"
#include "runtime/check.h"
#include "runtime/run_config.h"
#include "runtime/text.h"

namespace seqmesh::launch {

int64_t ParseInteger(const std::string& flag, const std::string& text, bool sizes) {
  SM_CHECK(!text.empty()) << flag << " needs a value";
  int64_t mult = 1;
  std::string digits = text;
  const char last = text.back();
  if (sizes && (last == 'K' || last == 'k')) mult = 1024;
  if (sizes && (last == 'M' || last == 'm')) mult = 1024 * 1024;
  if (mult != 1) digits.pop_back();
  const std::optional<int64_t> parsed = ParseInt64(digits);
  SM_CHECK(parsed) << flag << ": '" << text << "' is not " << (sizes ? "a size" : "an integer");
  const int64_t n = *parsed;
  SM_CHECK(n <= INT64_MAX / mult) << flag << ": '" << text << "' is too large";
  return n * mult;
}

FlagParser::FlagParser(std::string command, std::string summary, std::string example)
    : command_(std::move(command)), summary_(std::move(summary)), example_(std::move(example)) {}

FlagParser& FlagParser::Add(Flag flag) {
  SM_CHECK(Find(flag.name) == nullptr) << command_ << ": flag " << flag.name << " declared twice";
  flags_.push_back(std::move(flag));
  return *this;
}

FlagParser::Flag* FlagParser::Find(const std::string& name) {
  for (Flag& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}

FlagParser& FlagParser::Switch(const std::string& name, bool* value, const std::string& help) {
  return Add(
      {name, "", help, "", false, false, false, [value](const std::string&) { *value = true; }});
}

FlagParser& FlagParser::Unset(const std::string& name, bool* value, const std::string& help) {
  return Add(
      {name, "", help, "", false, false, false, [value](const std::string&) { *value = false; }});
}

FlagParser& FlagParser::String(const std::string& name, const std::string& value_name,
                               std::string* value, const std::string& help, Required required) {
  return Add({name, value_name, help, value->empty() ? "" : "\"" + *value + "\"", true,
              required == Required::kYes, false, [value](const std::string& v) { *value = v; }});
}

FlagParser& FlagParser::Int(const std::string& name, const std::string& value_name, int64_t* value,
                            const std::string& help, int64_t min, Required required) {
  return Add({name, value_name, help, std::to_string(*value), true, required == Required::kYes,
              false, [name, value, min](const std::string& v) {
                const int64_t n = ParseInteger(name, v, false);
                SM_CHECK(n >= min) << name << " must be >= " << min << ", got " << v;
                *value = n;
              }});
}

FlagParser& FlagParser::Size(const std::string& name, const std::string& value_name, int64_t* value,
                             const std::string& help, Required required) {
  return Add({name, value_name, help + " (K and M suffixes: 1024, 1048576)", std::to_string(*value),
              true, required == Required::kYes, false, [name, value](const std::string& v) {
                const int64_t n = ParseInteger(name, v, true);
                SM_CHECK(n > 0) << name << " must be > 0, got " << v;
                *value = n;
              }});
}

FlagParser& FlagParser::Double(const std::string& name, const std::string& value_name,
                               double* value, const std::string& help, Required required) {
  std::ostringstream def;
  def << *value;
  return Add({name, value_name, help, def.str(), true, required == Required::kYes, false,
              [name, value](const std::string& v) {
                size_t used = 0;
                double d = 0;
                try {
                  d = std::stod(v, &used);
                } catch (const std::exception&) {
                  used = 0;
                }
                SM_CHECK(!v.empty() && used == v.size())
                    << name << ": '" << v << "' is not a number";
                *value = d;
              }});
}

FlagParser& FlagParser::Positional(const std::string& value_name, std::vector<std::string>* values,
                                   const std::string& help, Required required) {
  positional_ = values;
  positional_name_ = value_name;
  positional_help_ = help;
  positional_required_ = required == Required::kYes;
  return *this;
}

FlagParser& FlagParser::ConfigOverrides(std::vector<std::string>* overrides) {
  overrides_ = overrides;
  return *this;
}

std::vector<std::string> FlagParser::Names() const {
  std::vector<std::string> out = {"-h", "--help"};
  for (const Flag& f : flags_) out.push_back(f.name);
  return out;
}

std::string FlagParser::Help() const {
  std::ostringstream os;
  os << "seqmesh " << command_ << ": " << summary_ << "\n\nusage: seqmesh " << command_;
  for (const Flag& f : flags_) {
    if (!f.required) continue;
    os << " " << f.name << (f.takes_value ? " " + f.value_name : "");
  }
  os << " [flags]";
  if (overrides_) os << " [--section.key=value ...]";
  if (positional_) os << " " << positional_name_ << (positional_required_ ? "..." : " [...]");
  os << "\n\nflags:\n";
  size_t width = 10;
  for (const Flag& f : flags_)
    width = std::max(width, f.name.size() + (f.takes_value ? f.value_name.size() + 1 : 0));
  auto row = [&](const std::string& left, const std::string& text) {
    os << "  " << left << std::string(width + 2 - std::min(width + 2, left.size()), ' ') << text
       << "\n";
  };
  for (const Flag& f : flags_) {
    std::string text = f.help;
    if (f.required)
      text += " (required)";
    else if (f.takes_value && !f.default_text.empty())
      text += " (default " + f.default_text + ")";
    row(f.name + (f.takes_value ? " " + f.value_name : ""), text);
  }
  row("-h, --help", "print this help and exit");
  if (positional_) row(positional_name_, positional_help_);
  os << "\nexample:\n  " << example_ << "\n";
  if (overrides_) {
    os << "\nconfiguration keys (in the TOML file, or as --section.key=value; a command-line value"
          " wins):\n";
    for (const ConfigKey& k : RunConfig::Keys())
      os << "  " << k.name << "  " << k.type << ", default " << k.default_value << "\n";
  }
  return os.str();
}

bool FlagParser::Parse(const Args& args) { return Parse(args, std::cout); }

bool FlagParser::Parse(const Args& args, std::ostream& out) {
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") {
      out << Help();
      return false;
    }
    if (a == "--list-flags") {  // for tests and shell completion: every flag, one per line
      for (const std::string& n : Names()) out << n << "\n";
      return false;
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("-", 0) != 0 || a == "-") {
      SM_CHECK(positional_) << "unexpected argument '" << a << "'; see seqmesh " << command_
                            << " --help";
      positional_->push_back(a);
      continue;
    }
    const size_t eq = a.find('=');
    const std::string name = a.substr(0, eq);
    Flag* f = Find(name);
    if (!f && overrides_ && name.rfind("--", 0) == 0 && name.find('.') != std::string::npos) {
      SM_CHECK(eq != std::string::npos)
          << "configuration override '" << a << "' must look like --section.key=value";
      overrides_->push_back(a);
      continue;
    }
    if (!f) {
      const std::string best = ClosestName(name, Names());
      SM_CHECK(false) << "unknown flag '" << name << "' (did you mean " << best
                      << "?); see seqmesh " << command_ << " --help"
                      << (overrides_ ? " (configuration overrides look like --section.key=value)"
                                     : "");
    }
    std::string value;
    if (f->takes_value) {
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
      } else {
        SM_CHECK(i + 1 < args.size()) << f->name << " needs a value (" << f->value_name << ")";
        value = args[++i];
      }
    } else {
      SM_CHECK(eq == std::string::npos) << f->name << " takes no value, got '" << a << "'";
    }
    f->set(value);
    f->seen = true;
  }
  for (const Flag& f : flags_)
    SM_CHECK(!f.required || f.seen)
        << "missing " << f.name << " " << f.value_name << "; see seqmesh " << command_ << " --help";
  SM_CHECK(!positional_required_ || !positional_->empty())
      << "missing " << positional_name_ << "; see seqmesh " << command_ << " --help";
  return true;
}

FlagParser& FlagParser::RunStart(bool* resume, bool* overwrite, std::string* init_from) {
  return Switch("--resume", resume,
                "continue from the newest committed checkpoint in <checkpoint.dir>")
      .Switch("--overwrite", overwrite,
              "start afresh in a used checkpoint.dir: the earlier run moves into "
              "<checkpoint.dir>/overwritten-<time>/")
      .String("--init-from", "DIR", init_from,
              "start from a Hugging Face directory (its config.json sets [model])");
}

}  // namespace seqmesh::launch
