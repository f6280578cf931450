#include "kernels/cuda/device_query.h"

namespace tessera {

bool CudaCompiledIn() { return false; }
std::vector<CudaDeviceInfo> QueryCudaDevices() { return {}; }

}  // namespace tessera
