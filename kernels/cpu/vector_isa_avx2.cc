// AVX2/FMA inner loops. This file alone is compiled with -mavx2 -mfma; its
// functions run only after ActiveIsa() has checked the CPU.
#include <immintrin.h>

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

}  // namespace tessera
