// `seqmesh export --merge-lora ADAPTER_DIR [--base DIR] --output DIR`: a Hugging Face model
// directory with a PEFT LoRA adapter merged into its weights (runtime/lora_adapter.h): each
// adapted weight becomes W + (lora_alpha / r) B A in the base's dtype, every other tensor and
// file (config, tokenizer) is copied, so the output loads in Hugging Face tools like the base.
// --base defaults to the adapter's base_model_name_or_path when that is a local directory.
#include <filesystem>
#include <iostream>

#include "launch/command.h"
#include "launch/flags.h"
#include "runtime/check.h"
#include "runtime/lora_adapter.h"

namespace seqmesh::launch {

int RunExport(const Args& args) {
  std::string adapter, base, output;
  FlagParser flags("export", "write a Hugging Face model with a LoRA adapter merged into it",
                   "seqmesh export --merge-lora runs/sft/step-00000100 --base models/TinyLlama "
                   "--output models/TinyLlama-sft");
  flags
      .String("--merge-lora", "DIR", &adapter,
              "the adapter: adapter_config.json and adapter_model.safetensors (PEFT's format)",
              Required::kYes)
      .String("--base", "DIR", &base,
              "the base model's Hugging Face directory (default: the adapter's "
              "base_model_name_or_path)")
      .String("--output", "DIR", &output, "the merged model's directory (new or empty)",
              Required::kYes);
  if (!flags.Parse(args)) return 0;
  if (base.empty()) {
    base = ReadAdapterConfig(adapter).base_model;
    SM_CHECK(!base.empty() && std::filesystem::is_directory(base))
        << "the adapter's base_model_name_or_path ('" << base
        << "') is not a directory here: pass --base DIR";
  }
  const MergeReport r = MergeLora(base, adapter, output);
  std::cout << "export: " << r.merged << " weights merged (W + alpha/r B A), " << r.copied
            << " tensors copied -> " << output << "\n";
  return 0;
}

}  // namespace seqmesh::launch
