// Command-line flags that shape the serving stack (model, engine, scheduler,
// quantization), shared by tessera-server and tessera-batch.
#ifndef TESSERA_SERVER_SERVING_SERVING_FLAGS_H_
#define TESSERA_SERVER_SERVING_SERVING_FLAGS_H_

#include "absl/status/statusor.h"
#include "server/serving/serving_stack.h"

namespace tessera {

// Reads --model, --threads, --max-batch-size, --max-queue,
// --max-new-tokens-limit, --kv-cache-tokens, --kv-block-size, --quantize,
// --quant-group-size, --adapter, --max-lora-rank, --adapter-slots and
// --max-adapter-mb;
// fails on values that cannot work.
absl::StatusOr<ServingOptions> ServingOptionsFromFlags();

}  // namespace tessera

#endif  // TESSERA_SERVER_SERVING_SERVING_FLAGS_H_
