// The inner loops of the CPU matrix kernels, in a portable version and an
// AVX2/FMA version; the set is chosen once at run time from what the CPU
// supports (TESSERA_CPU_ISA=portable forces the portable set).
//
// Thread safety: the returned table is immutable.
#ifndef TESSERA_KERNELS_CPU_VECTOR_ISA_H_
#define TESSERA_KERNELS_CPU_VECTOR_ISA_H_

#include <cstdint>

namespace tessera {

struct VectorIsa {
  const char* name;
  // Σ a[i]·b[i], i < n.
  float (*dot)(const float* a, const float* b, int64_t n);
  // out[i] = q[i] · scale, i < n.
  void (*dequant_int8)(const int8_t* q, float scale, float* out, int64_t n);
  // out[i] = nibble(packed, i) · scales[i / group], i < n; group % 8 == 0.
  void (*dequant_int4)(const uint8_t* packed, const float* scales, int32_t group, float* out, int64_t n);
};

const VectorIsa& PortableIsa();
// Null when the build or the CPU lacks AVX2/FMA.
const VectorIsa* Avx2Isa();
// The best available set (or the portable one when TESSERA_CPU_ISA=portable).
const VectorIsa& ActiveIsa();

}  // namespace tessera

#endif  // TESSERA_KERNELS_CPU_VECTOR_ISA_H_
