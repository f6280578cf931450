#include "kernels/ops.h"

namespace tessera {

// The CUDA op table arrives with the CUDA backend; until then no binary has
// one, whether or not it was built with CUDA.
const OpTable* CudaOps() { return nullptr; }

}  // namespace tessera
