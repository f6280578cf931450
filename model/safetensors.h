// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// header, then the tensor data. The reader memory-maps the file and validates
// the header completely before handing out any tensor view.
//
// Thread safety: a SafetensorsFile is immutable after Open and may be read from
// any thread.
#ifndef TESSERA_MODEL_SAFETENSORS_H_
#define TESSERA_MODEL_SAFETENSORS_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace tessera {

// Files hold F32/F16/BF16 model weights, and I8/U8 in Tessera's
// pre-quantized checkpoints (DType is common/dtype.h's; files never hold I4).
// "float32", "float16", "bfloat16", "int8", "uint8".
const char* DTypeTorchName(DType dtype);
size_t DTypeSize(DType dtype);
bool IsFloatDType(DType dtype);

struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping; unaligned
  size_t nbytes = 0;

  int64_t numel() const;
  // Converts to fp32 into out[numel()] (integer dtypes convert their values).
  void ToFloat(float* out) const;
  std::vector<float> ToFloat() const;
  // Converts elements [begin, begin + count) to fp32.
  void ToFloatRange(int64_t begin, int64_t count, float* out) const;
};

std::string ShapeString(const std::vector<int64_t>& shape);

class SafetensorsFile {
 public:
  // Fails with a message naming the file and the problem: missing file, header
  // length past the end, bad JSON, unsupported dtype, offsets past the data or
  // not matching the shape.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // The same checks on bytes held in memory (the file owns its copy); `name`
  // prefixes errors as the path does for Open.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes, const std::string& name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* Find(const std::string& name) const;
  // Drops the resident pages under a tensor once it has been copied out, so
  // that loading keeps at most about one tensor of the file in memory. Later
  // reads fault the pages back in from the file.
  void ReleasePages(const TensorView& view) const;

 private:
  SafetensorsFile() = default;
  // Validates the header of the mapping or owned bytes and fills tensors_.
  absl::Status ParseHeader(const uint8_t* bytes, size_t size);

  std::string path_;
  std::string owned_;  // FromBytes: the bytes the views point into
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::map<std::string, TensorView> tensors_;
};

// A tensor to write; data is numel * DTypeSize(dtype) bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

// Writes a safetensors file (header padded to 8 bytes, tensors in name order).
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

// Streams a safetensors file whose tensors are known up front: the header is
// written by Create, then the tensors' bytes in the given order through any
// number of Append calls, so no tensor needs to be held whole in memory.
class SafetensorsWriter {
 public:
  struct Spec {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;
  };
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(const std::string& path,
                                                                   const std::vector<Spec>& specs);
  ~SafetensorsWriter();
  absl::Status Append(const void* data, size_t bytes);
  // Fails unless exactly the announced bytes were appended.
  absl::Status Close();

 private:
  SafetensorsWriter() = default;
  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t expected_ = 0;
  uint64_t written_ = 0;
};

// fp32 <-> bf16 (round to nearest even) and fp16 helpers.
float Bf16ToFloat(uint16_t v);
uint16_t FloatToBf16(float f);
float F16ToFloat(uint16_t v);
uint16_t FloatToF16(float f);  // round to nearest even; overflow to inf

}  // namespace tessera

#endif  // TESSERA_MODEL_SAFETENSORS_H_
