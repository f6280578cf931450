// The CPU backend computes in fp32: ops refuse other activation dtypes.
#ifndef TESSERA_KERNELS_CPU_REQUIRE_F32_H_
#define TESSERA_KERNELS_CPU_REQUIRE_F32_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace tessera {

inline absl::Status RequireF32(const char* op, DType dtype) {
  if (dtype == DType::kF32) return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat(op, ": the CPU backend computes in f32, not ", DTypeName(dtype)));
}

}  // namespace tessera

#endif  // TESSERA_KERNELS_CPU_REQUIRE_F32_H_
