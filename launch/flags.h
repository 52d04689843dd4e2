// The one command-line parser of every `seqmesh` subcommand. A command declares its flags (each
// bound to a variable that holds its default), then parses:
//
//   FlagParser flags("prep", "tokenize text or JSONL files into a Megatron indexed dataset",
//                    "seqmesh prep --output data/text data/text/");
//   flags.String("--output", "PREFIX", &output, "where to write PREFIX.bin and PREFIX.idx",
//                Required::kYes);
//   flags.Switch("--jsonl", &jsonl, "the inputs are JSON lines with a \"text\" field");
//   flags.Positional("FILE", &inputs, "text files or folders of them");
//   if (!flags.Parse(args)) return 0;  // -h or --help: the help was printed
//
// `-h` and `--help` print every flag with its value, default and help, the command's example,
// and (for commands that take a configuration) every config key with its type and default from
// the config schema, and Parse returns false (`--list-flags` prints every flag name, one per line,
// for tests and shell completion, and returns false too). `--flag value` and `--flag=value` both
// work. An unknown flag, a missing value, a value of the wrong type or a missing required flag is
// one error naming the flag and the closest known one.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "launch/command.h"

namespace seqmesh::launch {

enum class Required { kNo, kYes };

class FlagParser {
 public:
  FlagParser(std::string command, std::string summary, std::string example);

  // A flag without a value: present sets *value to true.
  FlagParser& Switch(const std::string& name, bool* value, const std::string& help);
  // A flag that clears *value when present (--no-eos).
  FlagParser& Unset(const std::string& name, bool* value, const std::string& help);
  FlagParser& String(const std::string& name, const std::string& value_name, std::string* value,
                     const std::string& help, Required required = Required::kNo);
  // Integers, optionally with a K (1024) or M (1048576) suffix when `sizes` is set; at least
  // `min`.
  FlagParser& Int(const std::string& name, const std::string& value_name, int64_t* value,
                  const std::string& help, int64_t min = INT64_MIN,
                  Required required = Required::kNo);
  FlagParser& Size(const std::string& name, const std::string& value_name, int64_t* value,
                   const std::string& help, Required required = Required::kNo);
  FlagParser& Double(const std::string& name, const std::string& value_name, double* value,
                     const std::string& help, Required required = Required::kNo);
  // Every remaining argument that is not a flag.
  FlagParser& Positional(const std::string& value_name, std::vector<std::string>* values,
                         const std::string& help, Required required = Required::kNo);
  // --section.key=value overrides of the run configuration; the help lists every config key.
  FlagParser& ConfigOverrides(std::vector<std::string>* overrides);
  // Where a training run starts, the same for train, launch and coordinator: --resume,
  // --overwrite (launch/run_dir.h) and --init-from DIR (a Hugging Face directory).
  FlagParser& RunStart(bool* resume, bool* overwrite, std::string* init_from);

  // Parses `args`; false when -h or --help printed the help to `out` (the command then exits 0).
  bool Parse(const Args& args, std::ostream& out);
  bool Parse(const Args& args);  // help to stdout
  std::string Help() const;
  // Every flag name the command accepts (for tests and completions).
  std::vector<std::string> Names() const;

 private:
  struct Flag {
    std::string name, value_name, help, default_text;
    bool takes_value = false, required = false, seen = false;
    std::function<void(const std::string&)> set;
  };
  FlagParser& Add(Flag flag);
  Flag* Find(const std::string& name);

  std::string command_, summary_, example_;
  std::vector<Flag> flags_;
  std::vector<std::string>* positional_ = nullptr;
  std::string positional_name_, positional_help_;
  bool positional_required_ = false;
  std::vector<std::string>* overrides_ = nullptr;
};

// Parses an integer with an optional K/M suffix (`sizes`); errors name the flag.
int64_t ParseInteger(const std::string& flag, const std::string& text, bool sizes);

}  // namespace seqmesh::launch
