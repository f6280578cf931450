// The CPU ops' floating-point environment: denormal (subnormal) inputs and
// results are flushed to zero on every thread that runs ops (FTZ and DAZ on
// x86, FZ on AArch64), as CUDA kernels built with -ftz do. On x86 an
// arithmetic op on a denormal takes a microcode assist about a hundred times
// slower than a normal one, so an adapter (or prompt) that drives activations
// into the denormal range would otherwise slow every step of the batch it is
// in several-fold. Values below 1.2e-38 become 0; no fixture comparison sees
// the difference.
//
// Thread safety: affects the calling thread only; cheap after the first call.
#ifndef TESSERA_KERNELS_CPU_FLOAT_ENV_H_
#define TESSERA_KERNELS_CPU_FLOAT_ENV_H_

namespace tessera {

void FlushDenormalsOnThisThread();

}  // namespace tessera

#endif  // TESSERA_KERNELS_CPU_FLOAT_ENV_H_
