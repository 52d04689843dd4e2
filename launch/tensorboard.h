// TensorBoard event files (issue 19, item 2): every step's scalars from its metrics.jsonl record
// (launch/metrics_file.h) also go to <checkpoint.dir>/tensorboard/events.out.tfevents.<unix
// seconds>.<hostname>, which `tensorboard --logdir <checkpoint.dir>/tensorboard` plots. `train`'s
// trainer writes it, and in a job the coordinator (it holds the metrics); metrics.tensorboard =
// false turns it off. docs/LAUNCH.md, "TensorBoard".
//
// The file is a sequence of TFRecords, each one serialized proto::tensorboard::Event
// (proto/tensorboard.proto):
//   uint64 length            little-endian, of `data`
//   uint32 masked_crc(length) over the 8 bytes of `length`
//   byte   data[length]
//   uint32 masked_crc(data)
// where masked_crc(x) = ((c >> 15) | (c << 17)) + 0xa282ead8 with c = CRC32C(x), and all
// integers are little-endian. The first record's Event holds file_version "brain.Event:2"; each
// later one a step's Summary of simple_value scalars.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/tensorboard.pb.h"
#include "runtime/json.h"

namespace seqmesh::launch {

// TFRecord's masked CRC32C of `bytes` bytes.
uint32_t MaskedCrc32c(const void* data, size_t bytes);

// `data` framed as one TFRecord (the layout above).
std::string TfRecordOf(std::string_view data);

// A scalar as TensorBoard charts it: a tag and a value at a step.
struct Scalar {
  std::string tag;
  double value = 0;
};

// The scalars of one metrics.jsonl record, `train`'s or a job's: loss, val_loss (after an
// evaluation), grad_norm, lr, tok_per_s, mfu (where the record has it) and mem_mib (a job's is the
// largest rank's rank_mem_mib). Tags are the record's keys; a field that is missing or null (a
// non-finite loss) is left out.
std::vector<Scalar> ScalarsOf(const Json& record);

// One event file, appended record by record (move-only; the file is closed on destruction). Every
// record is written whole with write(2) as it comes, so a process that crashes loses nothing it
// wrote (a machine that crashes may lose what the kernel had not yet flushed, as metrics.jsonl).
class EventFileWriter {
 public:
  // Creates `dir` if needed and opens <dir>/events.out.tfevents.<unix seconds>.<hostname> for
  // appending (a second writer in the same second appends to the same file, which stays a valid
  // sequence of records), then writes the file_version record.
  explicit EventFileWriter(const std::string& dir);
  EventFileWriter(EventFileWriter&& other) noexcept;
  EventFileWriter& operator=(EventFileWriter&& other) noexcept;
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;
  ~EventFileWriter();

  // One Event, framed. Throws naming the file when it cannot be written.
  void Write(const proto::tensorboard::Event& event);
  // Step `step`'s scalars as one Event stamped with the time now (nothing when `scalars` is empty).
  void WriteScalars(int64_t step, const std::vector<Scalar>& scalars);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// "events.out.tfevents.<unix seconds>.<hostname>", the name TensorBoard looks for.
std::string EventFileName(int64_t unix_seconds, const std::string& hostname);

}  // namespace seqmesh::launch
