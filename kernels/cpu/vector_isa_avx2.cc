// AVX2/FMA inner loops. This file alone is compiled with -mavx2 -mfma; its
// functions run only after ActiveIsa() has checked the CPU.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace tessera {

float DotAvx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  float total = _mm_cvtss_f32(s);
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

void AxpyAvx2(float alpha, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += alpha * x[i];
}

void DequantInt8Avx2(const int8_t* q, float scale, float* out, int64_t n) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), vs));
  }
  for (; i < n; ++i) out[i] = static_cast<float>(q[i]) * scale;
}

void DequantInt4Avx2(const uint8_t* packed, const float* scales, int32_t group, float* out, int64_t n) {
  const __m128i low_mask = _mm_set1_epi8(0x0F);
  const __m128i eight = _mm_set1_epi8(8);
  int64_t i = 0;
  // Eight values (four bytes) at a time; group % 8 == 0 keeps each run of
  // eight inside one group.
  for (; i + 8 <= n; i += 8) {
    int32_t word;
    __builtin_memcpy(&word, packed + (i >> 1), 4);
    const __m128i bytes = _mm_cvtsi32_si128(word);
    const __m128i lo = _mm_and_si128(bytes, low_mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low_mask);
    __m128i v = _mm_unpacklo_epi8(lo, hi);                  // column order
    v = _mm_sub_epi8(_mm_xor_si128(v, eight), eight);       // sign-extend 4 bits
    const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(f, _mm256_set1_ps(scales[i / group])));
  }
  for (; i < n; ++i) {
    const uint8_t byte = packed[i >> 1];
    const int v = (i & 1) ? (byte >> 4) : (byte & 0x0F);
    out[i] = static_cast<float>((v ^ 8) - 8) * scales[i / group];
  }
}

namespace {

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Sixteen signed 4-bit values (eight bytes, even column in the low nibble)
// as sixteen int8 in column order.
inline __m128i UnpackNibbles(const uint8_t* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  const __m128i lo = _mm_and_si128(bytes, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  return _mm_sub_epi8(_mm_xor_si128(_mm_unpacklo_epi8(lo, hi), eight), eight);
}

}  // namespace

namespace {

// R rows share each weight load/unpack; every row keeps its own two
// accumulators and is reduced exactly as with R = 1.
template <int R>
void DotInt8Rows(const float* x, int64_t stride, const int8_t* q, float scale, int64_t n, float* out) {
  __m256 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i));
    const __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    const __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
    for (int r = 0; r < R; ++r) {
      acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * stride + i), w0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * stride + i + 8), w1, acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float total = HorizontalSum(_mm256_add_ps(acc0[r], acc1[r]));
    for (int64_t j = i; j < n; ++j) total += x[r * stride + j] * static_cast<float>(q[j]);
    out[r] = total * scale;
  }
}

template <int R>
void DotInt4Rows(const float* x, int64_t stride, const uint8_t* packed, const float* scales, int32_t group,
                 int64_t n, float* out) {
  __m256 total[R];
  float tail_total[R];
  for (int r = 0; r < R; ++r) total[r] = _mm256_setzero_ps(), tail_total[r] = 0;
  for (int64_t begin = 0; begin < n; begin += group) {
    const int64_t end = std::min<int64_t>(n, begin + group);
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    int64_t i = begin;
    for (; i + 16 <= end; i += 16) {  // begin is even, so i/2 is a byte boundary
      const __m128i v = UnpackNibbles(packed + (i >> 1));
      const __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
      const __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
      for (int r = 0; r < R; ++r) {
        acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * stride + i), w0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * stride + i + 8), w1, acc1[r]);
      }
    }
    const float scale = scales[begin / group];
    const __m256 vs = _mm256_set1_ps(scale);
    for (int r = 0; r < R; ++r) {
      float tail = 0;
      for (int64_t j = i; j < end; ++j) {
        const uint8_t byte = packed[j >> 1];
        const int v = (j & 1) ? (byte >> 4) : (byte & 0x0F);
        tail += x[r * stride + j] * static_cast<float>((v ^ 8) - 8);
      }
      total[r] = _mm256_fmadd_ps(_mm256_add_ps(acc0[r], acc1[r]), vs, total[r]);
      tail_total[r] += tail * scale;
    }
  }
  for (int r = 0; r < R; ++r) out[r] = HorizontalSum(total[r]) + tail_total[r];
}

}  // namespace

void DotInt8RowsAvx2(const float* x, int64_t stride, int rows, const int8_t* q, float scale, int64_t n,
                     float* out) {
  switch (rows) {
    case 1: return DotInt8Rows<1>(x, stride, q, scale, n, out);
    case 2: return DotInt8Rows<2>(x, stride, q, scale, n, out);
    case 3: return DotInt8Rows<3>(x, stride, q, scale, n, out);
    default: return DotInt8Rows<4>(x, stride, q, scale, n, out);
  }
}

void DotInt4RowsAvx2(const float* x, int64_t stride, int rows, const uint8_t* packed, const float* scales,
                     int32_t group, int64_t n, float* out) {
  switch (rows) {
    case 1: return DotInt4Rows<1>(x, stride, packed, scales, group, n, out);
    case 2: return DotInt4Rows<2>(x, stride, packed, scales, group, n, out);
    case 3: return DotInt4Rows<3>(x, stride, packed, scales, group, n, out);
    default: return DotInt4Rows<4>(x, stride, packed, scales, group, n, out);
  }
}

}  // namespace tessera
