#include "kernels/cpu/vector_isa.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace tessera {
namespace {

float DotPortable(const float* a, const float* b, int64_t n) {
  // Eight independent partial sums: vectorizable without reassociation.
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

void AxpyPortable(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void DequantInt8Portable(const int8_t* q, float scale, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(q[i]) * scale;
}

void DequantInt4Portable(const uint8_t* packed, const float* scales, int32_t group, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t byte = packed[i >> 1];
    const int v = (i & 1) ? (byte >> 4) : (byte & 0x0F);
    out[i] = static_cast<float>((v ^ 8) - 8) * scales[i / group];
  }
}

void DotInt8RowsPortable(const float* x, int64_t stride, int rows, const int8_t* q, float scale, int64_t n,
                         float* out) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + r * stride;
    float acc = 0;
    for (int64_t i = 0; i < n; ++i) acc += xr[i] * static_cast<float>(q[i]);
    out[r] = acc * scale;
  }
}

void DotInt4RowsPortable(const float* x, int64_t stride, int rows, const uint8_t* packed, const float* scales,
                         int32_t group, int64_t n, float* out) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + r * stride;
    float total = 0;
    for (int64_t begin = 0; begin < n; begin += group) {
      const int64_t end = std::min<int64_t>(n, begin + group);
      float acc = 0;
      for (int64_t i = begin; i < end; ++i) {
        const uint8_t byte = packed[i >> 1];
        const int v = (i & 1) ? (byte >> 4) : (byte & 0x0F);
        acc += xr[i] * static_cast<float>((v ^ 8) - 8);
      }
      total += acc * scales[begin / group];
    }
    out[r] = total;
  }
}

}  // namespace

#if defined(__x86_64__)
// Defined in vector_isa_avx2.cc, compiled with -mavx2 -mfma.
float DotAvx2(const float* a, const float* b, int64_t n);
void AxpyAvx2(float alpha, const float* x, float* y, int64_t n);
void DequantInt8Avx2(const int8_t* q, float scale, float* out, int64_t n);
void DequantInt4Avx2(const uint8_t* packed, const float* scales, int32_t group, float* out, int64_t n);
void DotInt8RowsAvx2(const float* x, int64_t stride, int rows, const int8_t* q, float scale, int64_t n, float* out);
void DotInt4RowsAvx2(const float* x, int64_t stride, int rows, const uint8_t* packed, const float* scales,
                     int32_t group, int64_t n, float* out);
#endif

const VectorIsa& PortableIsa() {
  static const VectorIsa isa = {"portable",          DotPortable,     AxpyPortable,       DequantInt8Portable,
                                 DequantInt4Portable, DotInt8RowsPortable, DotInt4RowsPortable};
  return isa;
}

const VectorIsa* Avx2Isa() {
#if defined(__x86_64__)
  static const VectorIsa isa = {"avx2+fma", DotAvx2, AxpyAvx2, DequantInt8Avx2, DequantInt4Avx2, DotInt8RowsAvx2, DotInt4RowsAvx2};
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported ? &isa : nullptr;
#else
  return nullptr;
#endif
}

const VectorIsa& ActiveIsa() {
  static const VectorIsa* active = [] {
    const char* force = std::getenv("TESSERA_CPU_ISA");
    if (force && std::strcmp(force, "portable") == 0) return &PortableIsa();
    const VectorIsa* avx2 = Avx2Isa();
    return avx2 ? avx2 : &PortableIsa();
  }();
  return *active;
}

}  // namespace tessera
