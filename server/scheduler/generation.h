// What a caller hands the scheduler for one generation, and what it gets back.
#ifndef TESSERA_SERVER_SCHEDULER_GENERATION_H_
#define TESSERA_SERVER_SCHEDULER_GENERATION_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/engine/sampler.h"

namespace tessera {

enum class FinishReason { kLength, kStop, kEos, kCancelled };
// The one spelling every API uses: "length", "stop" (end of sequence, a stop
// string or a stop token id) or "cancelled".
const char* FinishReasonName(FinishReason r);

struct GenerationParams {
  std::vector<int32_t> prompt_ids;
  int32_t max_new_tokens = 16;
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  std::optional<uint64_t> seed;  // unset: drawn by the scheduler
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Adapter cache key (see AdapterCache); empty: base model. The API layer
  // resolves a client's reference to this key after access checks.
  std::string adapter_id;
  // The adapter as people name it (OWNER/NAME, or a start-up adapter's
  // name), for logs and metrics; empty: adapter_id is used.
  std::string adapter_name;
  // Fairness unit: requests of different tenants share the batch evenly.
  std::string tenant;
  // A request still queued at its deadline finishes with DeadlineExceeded.
  absl::Time deadline = absl::InfiniteFuture();
  bool return_prompt_logits = false;  // logits of the last prompt position
  std::string request_id;             // for logs
};

// Tokens produced by one step and the text that became final with them.
struct GenerationDelta {
  std::vector<int32_t> token_ids;
  std::string text;
};

struct GenerationResult {
  // Not OK when the request could not run: its deadline passed in the queue
  // (DeadlineExceeded), its adapter failed to load, or an internal failure.
  absl::Status status;
  std::vector<int32_t> token_ids;
  std::string text;
  FinishReason finish_reason = FinishReason::kLength;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double queue_ms = 0;
  double time_to_first_token_ms = 0;
  double total_ms = 0;
  uint64_t seed = 0;
  std::vector<float> prompt_logits;  // [vocab] when requested
};

// Invoked on the scheduler thread. on_delta may run many times, then
// on_finish exactly once; nothing runs after on_finish. Both must be quick
// and must not call back into the scheduler.
struct GenerationCallbacks {
  std::function<void(const GenerationDelta&)> on_delta;
  std::function<void(GenerationResult)> on_finish;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_SCHEDULER_GENERATION_H_
