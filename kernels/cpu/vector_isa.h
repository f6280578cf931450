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
  // y[i] += alpha · x[i], i < n.
  void (*axpy)(float alpha, const float* x, float* y, int64_t n);
  // out[i] = q[i] · scale, i < n.
  void (*dequant_int8)(const int8_t* q, float scale, float* out, int64_t n);
  // out[i] = nibble(packed, i) · scales[i / group], i < n; group % 8 == 0.
  void (*dequant_int4)(const uint8_t* packed, const float* scales, int32_t group, float* out, int64_t n);
  // For r < rows (1..kMaxDotRows): out[r] = Σ x[r·x_stride + i]·q[i]·scale,
  // i < n, without materializing the weights. Each row's result is
  // bit-identical whatever `rows` is, so batching never changes a request's
  // numbers.
  void (*dot_int8_rows)(const float* x, int64_t x_stride, int rows, const int8_t* q, float scale, int64_t n,
                        float* out);
  // Same with int4 weights: nibble(packed, i)·scales[i / group]; group % 8 == 0.
  void (*dot_int4_rows)(const float* x, int64_t x_stride, int rows, const uint8_t* packed, const float* scales,
                        int32_t group, int64_t n, float* out);
};

inline constexpr int kMaxDotRows = 4;

const VectorIsa& PortableIsa();
// Null when the build or the CPU lacks AVX2/FMA.
const VectorIsa* Avx2Isa();
// The best available set (or the portable one when TESSERA_CPU_ISA=portable).
const VectorIsa& ActiveIsa();

}  // namespace tessera

#endif  // TESSERA_KERNELS_CPU_VECTOR_ISA_H_
