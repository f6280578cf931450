// Reports the CUDA devices visible to this process. Compiled only when the
// build has CUDA (TESSERA_WITH_CUDA); otherwise a stub reports none.
#ifndef TESSERA_KERNELS_CUDA_DEVICE_QUERY_H_
#define TESSERA_KERNELS_CUDA_DEVICE_QUERY_H_

#include <string>
#include <vector>

namespace tessera {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  size_t total_memory_bytes = 0;
};

// True when this binary was built with the CUDA kernels.
bool CudaCompiledIn();

// Devices usable now; empty without a driver or GPU (never an error).
std::vector<CudaDeviceInfo> QueryCudaDevices();

}  // namespace tessera

#endif  // TESSERA_KERNELS_CUDA_DEVICE_QUERY_H_
