// `seqmesh._seqmesh`: the bindings over launch/ (DESIGN.md section 9). The pure-Python package
// (python/seqmesh/__init__.py) wraps these in the documented API; nothing here computes what the
// command line does not: a Trainer is launch::Trainer, prep and synth are the subcommands.
//
// Errors: seqmesh::Error becomes seqmesh.Error (a RuntimeError); a config that cannot load is
// seqmesh.ConfigError (a ValueError) with the command line's message; a file that is not there is
// FileNotFoundError; bad arrays are ValueError (python/src/arrays.h). The GIL is released while
// C++ runs a step, a forward or an evaluation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <streambuf>
#include <string>
#include <vector>

#include "launch/command.h"
#include "launch/generate.h"
#include "launch/perplexity.h"
#include "launch/trainer.h"
#include "python/src/arrays.h"
#include "runtime/check.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/layers.h"
#include "runtime/lora_checkpoint.h"
#include "runtime/run_config.h"
#include "runtime/tokenizer.h"

namespace py = pybind11;
namespace fs = std::filesystem;

namespace seqmesh::python {
namespace {

PyObject* g_error = nullptr;         // seqmesh.Error
PyObject* g_config_error = nullptr;  // seqmesh.ConfigError

[[noreturn]] void Raise(PyObject* type, const std::string& message) {
  PyErr_SetString(type, message.c_str());
  throw py::error_already_set();
}

void RequirePath(const std::string& path, const std::string& what) {
  if (!fs::exists(path)) Raise(PyExc_FileNotFoundError, what + " '" + path + "' does not exist");
}

// `section.key=value` overrides, values already TOML (the Python side writes them).
RunConfig LoadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  if (!path.empty()) {
    RequirePath(path, "the config file");
    if (fs::is_directory(path))
      Raise(PyExc_IsADirectoryError, "the config file '" + path +
                                         "' is a directory; pass a TOML file such as " + path +
                                         "/config.toml");
  }
  try {
    return RunConfig::Load(path, overrides);
  } catch (const Error& e) {
    Raise(g_config_error, e.what());
  }
}

class NullBuffer : public std::streambuf {
 protected:
  int overflow(int c) override { return c; }
};

// A launch::Trainer and where its console goes.
class PyTrainer {
 public:
  PyTrainer(const RunConfig& config, const std::string& init_from, bool resume, bool overwrite,
            bool quiet)
      : null_(quiet ? new std::ostream(&null_buffer_) : nullptr) {
    if (!init_from.empty()) RequirePath(init_from + "/config.json", "init_from's config");
    launch::TrainerOptions options;
    options.resume = resume;
    options.overwrite = overwrite;
    options.init_from = init_from;
    options.require_data = false;
    std::ostream& out = null_ ? *null_ : std::cout;
    py::gil_scoped_release release;
    trainer_ = std::make_unique<launch::Trainer>(config, options, out);
  }

  launch::Trainer& get() { return *trainer_; }
  int64_t vocab() const { return trainer_->config().model.vocab; }

  std::string Step(py::handle batch) {
    Json record;
    if (batch.is_none()) {
      py::gil_scoped_release release;
      record = trainer_->Step();
    } else {
      const launch::Documents docs = DocumentsOf(batch, "batch", vocab());
      py::gil_scoped_release release;
      record = trainer_->Step(docs);
    }
    std::cout.flush();
    return record.Dump();
  }

  double Evaluate(py::handle documents) {
    if (documents.is_none()) {
      py::gil_scoped_release release;
      return trainer_->Evaluate();
    }
    const launch::Documents docs = DocumentsOf(documents, "dataset", vocab());
    py::gil_scoped_release release;
    return trainer_->Evaluate(docs);
  }

  // (logits (T, vocab) or none, loss) of one forward over `tokens` split at `cu_seqlens`.
  std::pair<py::object, double> Forward(py::handle tokens, py::handle cu_seqlens, bool logits) {
    const std::vector<int32_t> ids = TokenIds(tokens, "tokens", vocab());
    const int64_t n = static_cast<int64_t>(ids.size());
    const int64_t capacity = trainer_->config().training.micro_batch_tokens;
    if (n > capacity)
      throw py::value_error("tokens has " + std::to_string(n) +
                            " tokens; one forward holds at most training.micro_batch_tokens = " +
                            std::to_string(capacity));
    const std::vector<int32_t> cu = CuSeqlensOf(cu_seqlens, n);
    std::vector<int32_t> targets(ids.size(), kIgnoreIndex);
    int64_t count = 0;
    for (size_t d = 0; d + 1 < cu.size(); ++d)
      for (int32_t t = cu[d]; t + 1 < cu[d + 1]; ++t, ++count) targets[t] = ids[t + 1];
    Batch batch;
    batch.tokens = ids.data();
    batch.targets = targets.data();
    batch.cu_seqlens = cu.data();
    batch.num_docs = static_cast<int64_t>(cu.size()) - 1;
    batch.num_tokens = n;
    py::array_t<float> out;
    float* out_data = nullptr;
    if (logits) {
      out = py::array_t<float>({n, vocab()});
      out_data = out.mutable_data();
    }
    double loss = 0;
    {
      py::gil_scoped_release release;
      loss = trainer_->model().Forward(batch, static_cast<float>(std::max<int64_t>(count, 1)),
                                       out_data);
    }
    if (count == 0) loss = std::nan("");  // no next token to predict
    return {logits ? py::object(out) : py::object(py::none()), loss};
  }

  // name -> numpy view of each tensor's memory (zero copy; `owner` keeps it alive).
  static py::dict Views(const std::vector<Tensor>& tensors, const std::vector<Tensor>& names,
                        py::handle owner) {
    py::dict views;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      SM_CHECK(t.dtype() == DType::kF32) << t.name() << " is not F32";
      std::vector<py::ssize_t> shape, strides;
      for (int d = 0; d < t.shape().ndim(); ++d) shape.push_back(t.dim(d));
      py::ssize_t stride = sizeof(float);
      strides.resize(shape.size());
      for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
        strides[d] = stride;
        stride *= shape[d];
      }
      views[py::str(names[i].name())] =
          py::array(py::dtype::of<float>(), shape, strides, t.f32(), owner);
    }
    return views;
  }

 private:
  NullBuffer null_buffer_;
  std::unique_ptr<std::ostream> null_;
  std::unique_ptr<launch::Trainer> trainer_;
};

int RunCommand(int (*run)(const launch::Args&), const std::vector<std::string>& args) {
  py::gil_scoped_release release;
  const int status = run(args);
  std::cout.flush();
  return status;
}

}  // namespace
}  // namespace seqmesh::python

PYBIND11_MODULE(_seqmesh, m) {
  using namespace seqmesh;
  using namespace seqmesh::python;
  m.doc() = "seqmesh's C++ core (bindings over launch/); use the `seqmesh` package's API";
  m.attr("__version__") = SEQMESH_VERSION;
  m.attr("_default_binary") = SEQMESH_BINARY;

  g_error = PyErr_NewExceptionWithDoc("seqmesh.Error",
                                      "A run-time failure of seqmesh (the message says what "
                                      "failed and how to fix it).",
                                      PyExc_RuntimeError, nullptr);
  g_config_error = PyErr_NewExceptionWithDoc(
      "seqmesh.ConfigError", "A configuration that cannot run (the command line's message).",
      PyExc_ValueError, nullptr);
  m.attr("Error") = py::handle(g_error);
  m.attr("ConfigError") = py::handle(g_config_error);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const seqmesh::Error& e) {
      PyErr_SetString(g_error, e.what());
    } catch (const std::filesystem::filesystem_error& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    }
  });

  py::class_<RunConfig>(m, "_Config")
      .def_static("load", &LoadConfig, py::arg("path"), py::arg("overrides"))
      .def_static(
          "parse",
          [](const std::string& text) {
            try {
              return RunConfig::Parse(text, "<config>");
            } catch (const seqmesh::Error& e) {
              Raise(g_config_error, e.what());
            }
          },
          py::arg("text"))
      .def("to_toml", &RunConfig::ToToml)
      .def("metrics_path", &RunConfig::metrics_path);

  py::class_<PyTrainer>(m, "_Trainer")
      .def(py::init<const RunConfig&, const std::string&, bool, bool, bool>(), py::arg("config"),
           py::arg("init_from"), py::arg("resume"), py::arg("overwrite"), py::arg("quiet"))
      .def("step", &PyTrainer::Step, py::arg("batch"))
      .def("evaluate", &PyTrainer::Evaluate, py::arg("documents"))
      .def("save",
           [](PyTrainer& t) {
             py::gil_scoped_release release;
             return t.get().Save();
           })
      .def(
          "load",
          [](PyTrainer& t, const std::string& dir) {
            RequirePath(dir, "the checkpoint directory");
            py::gil_scoped_release release;
            t.get().Load(dir);
          },
          py::arg("path"))
      .def(
          "save_hf",
          [](PyTrainer& t, const std::string& dir) {
            py::gil_scoped_release release;
            // A LoRA run saves its adapters in PEFT's format (export --merge-lora merges them).
            if (t.get().model().lora())
              SaveLoraAdapter(t.get().model(), dir);
            else
              SaveHfModel(t.get().model(), dir, t.get().config().checkpoint.export_dtype);
          },
          py::arg("path"))
      .def(
          "load_hf",
          [](PyTrainer& t, const std::string& dir) {
            RequirePath(dir, "the Hugging Face directory");
            py::gil_scoped_release release;
            LoadHfWeights(t.get().model(), dir);
          },
          py::arg("path"))
      .def_property_readonly("step_count", [](PyTrainer& t) { return t.get().step(); })
      .def_property_readonly("done", [](PyTrainer& t) { return t.get().done(); })
      .def_property_readonly("has_data", [](PyTrainer& t) { return t.get().has_data(); })
      .def_property_readonly("steps", [](PyTrainer& t) { return t.get().config().training.steps; })
      .def("config_toml", [](PyTrainer& t) { return t.get().config().ToToml(); })
      .def("forward", &PyTrainer::Forward, py::arg("tokens"), py::arg("cu_seqlens"),
           py::arg("logits"))
      .def("parameters",
           [](py::object self) {
             PyTrainer& t = self.cast<PyTrainer&>();
             const Model& model = t.get().model();
             if (!model.lora()) return PyTrainer::Views(model.params(), model.params(), self);
             std::vector<Tensor> all = model.params();  // the frozen base, then the adapters
             all.insert(all.end(), model.trainable().begin(), model.trainable().end());
             return PyTrainer::Views(all, all, self);
           })
      .def("gradients", [](py::object self) {
        PyTrainer& t = self.cast<PyTrainer&>();
        if (!t.get().gradients_resident())
          Raise(g_error,
                "the gradients were handed to the offloaded optimizer (offload.optimizer = "
                "\"nvme\") and their memory given back; train with offload.optimizer = \"none\" "
                "or \"cpu\" to read them");
        const Model& model = t.get().model();
        return PyTrainer::Views(model.grads(), model.trainable(), self);
      });

  m.def(
      "_prep",
      [](const std::vector<std::string>& args) { return RunCommand(launch::RunPrep, args); },
      py::arg("args"));
  m.def(
      "_synth",
      [](const std::vector<std::string>& args) { return RunCommand(launch::RunSynth, args); },
      py::arg("args"));

  // generate and eval: the commands' own functions (launch/generate.h, launch/perplexity.h); the
  // result is their --json object, which the Python side parses.
  m.def(
      "_generate",
      [](const std::string& model, const std::string& prompt, const std::string& tokenizer,
         int64_t max_new_tokens, double temperature, double top_p, int64_t top_k, uint64_t seed,
         int threads) {
        launch::GenerateRequest r;
        r.model_dir = model;
        r.prompt = prompt;
        r.tokenizer = tokenizer;
        r.max_new_tokens = max_new_tokens;
        r.sampling.temperature = static_cast<float>(temperature);
        r.sampling.top_p = static_cast<float>(top_p);
        r.sampling.top_k = top_k;
        r.sampling.seed = seed;
        r.threads = threads;
        py::gil_scoped_release release;
        return launch::GenerateText(r).ToJson().Dump();
      },
      py::arg("model"), py::arg("prompt"), py::arg("tokenizer"), py::arg("max_new_tokens"),
      py::arg("temperature"), py::arg("top_p"), py::arg("top_k"), py::arg("seed"),
      py::arg("threads"));
  m.def(
      "_eval",
      [](const std::string& model, const std::string& data, int64_t max_length, int threads) {
        launch::EvalRequest r;
        r.model_dir = model;
        r.data = data;
        r.max_length = max_length;
        r.threads = threads;
        py::gil_scoped_release release;
        return launch::EvaluatePerplexity(r).ToJson().Dump();
      },
      py::arg("model"), py::arg("data"), py::arg("max_length"), py::arg("threads"));

  py::class_<ByteTokenizer>(m, "ByteTokenizer",
                            "Bytes as tokens: ids 0..255 are the bytes, then BOS, EOS and PAD.")
      .def(py::init<>())
      .def_property_readonly("vocab_size", &ByteTokenizer::vocab_size)
      .def_property_readonly("bos", &ByteTokenizer::bos)
      .def_property_readonly("eos", &ByteTokenizer::eos)
      .def_property_readonly("pad", &ByteTokenizer::pad)
      .def(
          "encode",
          [](const ByteTokenizer& t, const std::string& text) {
            std::vector<int32_t> ids;
            t.Encode(text, ids);
            return py::array_t<int32_t>(static_cast<py::ssize_t>(ids.size()), ids.data());
          },
          py::arg("text"), "The token ids of `text` (UTF-8 bytes), as an int32 array.")
      .def(
          "decode",
          [](const ByteTokenizer& t, py::handle ids) {
            const std::vector<int32_t> v = TokenIds(ids, "ids", t.vocab_size());
            return py::bytes(t.Decode(v)).attr("decode")("utf-8", "replace");
          },
          py::arg("ids"), "The text of `ids` (special tokens dropped).");
}
