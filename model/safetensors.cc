#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace tessera {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
// Longer tensor names than any real checkpoint's (~100 bytes), and more
// dimensions than any real tensor.
constexpr size_t kMaxTensorNameBytes = 1024;
constexpr size_t kMaxRank = 8;

// n * d with overflow check; false when the product leaves [0, INT64_MAX].
bool CheckedMul(int64_t n, int64_t d, int64_t* out) { return !__builtin_mul_overflow(n, d, out) && *out >= 0; }

absl::StatusOr<DType> ParseDType(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  if (s == "I8") return DType::kI8;
  if (s == "U8") return DType::kU8;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype '", s, "' (supported: F32, F16, BF16; I8 and U8 in pre-quantized files)"));
}

}  // namespace

const char* DTypeTorchName(DType d) {
  switch (d) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
    case DType::kI8:
      return "int8";
    case DType::kU8:
      return "uint8";
    case DType::kI4:
      return "int4";
  }
  return "?";
}

size_t DTypeSize(DType d) {
  switch (d) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI8:
    case DType::kU8:
      return 1;
    case DType::kI4:
      return 0;  // packed two per byte; never a file dtype
  }
  return 0;
}

bool IsFloatDType(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

float Bf16ToFloat(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t abs = bits & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00;   // NaN
  if (abs >= 0x477ff000) return sign | 0x7c00;  // rounds past 65504: inf
  if (abs < 0x38800000) {                       // subnormal or zero in half
    if (abs < 0x33000000) return sign;          // below half the smallest subnormal
    const uint32_t mant = (abs & 0x7fffff) | 0x800000;
    const int shift = 126 - static_cast<int>(abs >> 23);  // value / 2^-24, in mantissa units
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t h = ((abs >> 23) - 127 + 15) << 10 | ((abs >> 13) & 0x3ff);
  const uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // may carry into the exponent
  return sign | static_cast<uint16_t>(h);
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void TensorView::ToFloat(float* out) const { ToFloatRange(0, numel(), out); }

void TensorView::ToFloatRange(int64_t begin, int64_t n, float* out) const {
  const uint8_t* p = data + begin * static_cast<int64_t>(DTypeSize(dtype));
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, p, n * 4);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        out[i] = Bf16ToFloat(v);
      }
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        out[i] = F16ToFloat(v);
      }
      return;
    case DType::kI8:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int8_t>(p[i]));
      return;
    case DType::kU8:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
      return;
    case DType::kI4:
      return;  // never a file dtype
  }
}

std::vector<float> TensorView::ToFloat() const {
  std::vector<float> out(numel());
  ToFloat(out.data());
  return out;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return fail(absl::StrCat("cannot stat: ", std::strerror(errno)));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return fail(
        absl::StrCat("file is ", size, " bytes, too short for a safetensors header (truncated download?)"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return fail(absl::StrCat("mmap failed: ", std::strerror(errno)));

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = map;
  file->mapping_size_ = size;
  TESSERA_RETURN_IF_ERROR(file->ParseHeader(static_cast<const uint8_t*>(map), size));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(std::string bytes,
                                                                           const std::string& name) {
  if (bytes.size() < 8) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", bytes.size(),
                                                   " bytes, too short for a safetensors header"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = name;
  file->owned_ = std::move(bytes);
  TESSERA_RETURN_IF_ERROR(
      file->ParseHeader(reinterpret_cast<const uint8_t*>(file->owned_.data()), file->owned_.size()));
  return file;
}

absl::Status SafetensorsFile::ParseHeader(const uint8_t* bytes, size_t size) {
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", what));
  };
  SafetensorsFile* file = this;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return fail(absl::StrCat("header length ", header_len, " exceeds the file size ", size,
                             " (truncated or not a safetensors file)"));
  }
  absl::StatusOr<nlohmann::json> parsed = ParseJson(
      std::string_view(reinterpret_cast<const char*>(bytes + 8), header_len), "header", kMaxHeaderBytes);
  if (!parsed.ok()) return fail(std::string(parsed.status().message()));
  const nlohmann::json& header = *parsed;
  if (!header.is_object()) return fail("header is not a JSON object");

  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, const std::string*>> spans;  // [begin, end), name
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const nlohmann::json& t = it.value();
    auto tfail = [&](const std::string& what) {
      return fail(absl::StrCat("tensor '", Excerpt(name), "': ", what));
    };
    if (name.size() > kMaxTensorNameBytes) {
      return tfail(absl::StrCat("name is ", name.size(), " bytes, over the limit of ", kMaxTensorNameBytes));
    }
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets")) {
      return tfail("entry needs dtype, shape and data_offsets");
    }
    if (!t["dtype"].is_string()) return tfail("dtype is not a string");
    absl::StatusOr<DType> dtype = ParseDType(Excerpt(t["dtype"].get<std::string>(), 16));
    if (!dtype.ok()) return tfail(std::string(dtype.status().message()));
    TensorView view;
    view.dtype = *dtype;
    if (!t["shape"].is_array()) return tfail("shape is not an array");
    if (t["shape"].size() > kMaxRank) {
      return tfail(absl::StrCat("shape has ", t["shape"].size(), " dimensions, more than ", kMaxRank));
    }
    int64_t numel = 1, nonzero = 1;  // nonzero: the product of max(d, 1), so a 0 cannot hide an overflow
    for (const auto& d : t["shape"]) {
      if (!d.is_number_integer() || (d.is_number_unsigned() && d.get<uint64_t>() > INT64_MAX) ||
          d.get<int64_t>() < 0) {
        return tfail("shape has a bad dimension (dimensions are integers in [0, 2^63))");
      }
      view.shape.push_back(d.get<int64_t>());
      if (!CheckedMul(numel, view.shape.back(), &numel) ||
          !CheckedMul(nonzero, std::max<int64_t>(view.shape.back(), 1), &nonzero)) {
        return tfail(absl::StrCat("shape ", ShapeString(view.shape), "... has more elements than fit in 64 bits"));
      }
    }
    int64_t expected_signed = 0;
    if (!CheckedMul(numel, static_cast<int64_t>(DTypeSize(view.dtype)), &expected_signed)) {
      return tfail(absl::StrCat("shape ", ShapeString(view.shape), " of ", DTypeName(view.dtype),
                                " needs more bytes than fit in 64 bits"));
    }
    const auto& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return tfail("data_offsets must be two non-negative integers");
    }
    const uint64_t begin = off[0].get<uint64_t>();
    const uint64_t end = off[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return tfail(absl::StrCat("data_offsets [", begin, ", ", end, "] point past the end of the data (",
                                data_size, " bytes; truncated file?)"));
    }
    const uint64_t expected = static_cast<uint64_t>(expected_signed);
    if (end - begin != expected) {
      return tfail(absl::StrCat("holds ", end - begin, " bytes but shape ", ShapeString(view.shape), " of ",
                                DTypeName(view.dtype), " needs ", expected));
    }
    view.data = data + begin;
    view.nbytes = end - begin;
    auto [slot, inserted] = file->tensors_.emplace(name, std::move(view));
    if (!inserted) return tfail("appears twice in the header");
    if (end > begin) spans.push_back({{begin, end}, &slot->first});
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first.first < spans[i - 1].first.second) {
      return fail(absl::StrCat("tensor '", Excerpt(*spans[i].second), "' (bytes [", spans[i].first.first, ", ",
                               spans[i].first.second, ")) overlaps tensor '", Excerpt(*spans[i - 1].second),
                               "' (bytes [", spans[i - 1].first.first, ", ", spans[i - 1].first.second, "))"));
    }
  }
  return absl::OkStatus();
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_) ::munmap(mapping_, mapping_size_);
}

void SafetensorsFile::ReleasePages(const TensorView& view) const {
  // Only a file mapping can give pages back; owned bytes are heap memory.
  if (view.nbytes == 0 || mapping_ == nullptr) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(view.data) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(view.data) + view.nbytes;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(const std::string& path,
                                                                             const std::vector<Spec>& specs) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const Spec& t : specs) {
    uint64_t bytes = DTypeSize(t.dtype);
    for (int64_t d : t.shape) bytes *= static_cast<uint64_t>(d);
    header[t.name] = {{"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  w->expected_ = offset;
  w->file_ = std::fopen(path.c_str(), "wb");
  if (!w->file_) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing: ", std::strerror(errno)));
  }
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  if (std::fwrite(len, 1, 8, w->file_) != 8 || std::fwrite(text.data(), 1, text.size(), w->file_) != text.size()) {
    return absl::DataLossError(absl::StrCat(path, ": write failed (disk full?)"));
  }
  return w;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_) std::fclose(file_);
}

absl::Status SafetensorsWriter::Append(const void* data, size_t bytes) {
  if (!file_) return absl::FailedPreconditionError(absl::StrCat(path_, ": already closed"));
  if (written_ + bytes > expected_) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": more data than the header announces"));
  }
  if (std::fwrite(data, 1, bytes, file_) != bytes) {
    return absl::DataLossError(absl::StrCat(path_, ": write failed (disk full?)"));
  }
  written_ += bytes;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Close() {
  if (!file_) return absl::FailedPreconditionError(absl::StrCat(path_, ": already closed"));
  const bool ok = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!ok) return absl::DataLossError(absl::StrCat(path_, ": close failed (disk full?)"));
  if (written_ != expected_) {
    return absl::DataLossError(absl::StrCat(path_, ": ", written_, " of ", expected_, " data bytes written"));
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  std::vector<const TensorToWrite*> order;
  for (const TensorToWrite& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });
  std::vector<SafetensorsWriter::Spec> specs;
  for (const TensorToWrite* t : order) specs.push_back({t->name, t->dtype, t->shape});
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> w = SafetensorsWriter::Create(path, specs);
  if (!w.ok()) return w.status();
  for (const TensorToWrite* t : order) {
    if (absl::Status s = (*w)->Append(t->data.data(), t->data.size()); !s.ok()) return s;
  }
  return (*w)->Close();
}

}  // namespace tessera
