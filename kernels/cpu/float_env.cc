#include "kernels/cpu/float_env.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace tessera {

void FlushDenormalsOnThisThread() {
  thread_local bool done = false;
  if (done) return;
  done = true;
#if defined(__x86_64__) || defined(__i386__)
  constexpr unsigned kFlushToZero = 0x8000;      // MXCSR.FTZ
  constexpr unsigned kDenormalsAreZero = 0x0040;  // MXCSR.DAZ
  _mm_setcsr(_mm_getcsr() | kFlushToZero | kDenormalsAreZero);
#elif defined(__aarch64__)
  unsigned long fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  fpcr |= 1ul << 24;  // FPCR.FZ
  __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#endif
}

}  // namespace tessera
