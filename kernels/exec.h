// ExecContext: where and with what an op runs. Every op of the OpTable
// (kernels/ops.h) takes (const FooArgs&, const ExecContext&); an op allocates
// nothing: scratch memory comes from `workspace`, sized by the op's
// FooWorkspaceBytes(args) query where it has one.
#ifndef TESSERA_KERNELS_EXEC_H_
#define TESSERA_KERNELS_EXEC_H_

#include <cstddef>

#include "common/dtype.h"

namespace tessera {

class ThreadPool;

struct ExecContext {
  Device device = Device::kCpu;
  // CPU: the pool that ops split their work across; null runs on the
  // calling thread.
  ThreadPool* pool = nullptr;
  // CUDA: the cudaStream_t that ops enqueue on (null: the default stream).
  void* stream = nullptr;
  // Scratch of workspace_bytes bytes, 64-byte aligned, for the duration of
  // one op call.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

}  // namespace tessera

#endif  // TESSERA_KERNELS_EXEC_H_
