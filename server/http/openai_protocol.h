// The OpenAI API's request and response JSON (completions and chat
// completions, with server-sent-event chunks), translated to and from
// Tessera's own request message and results. No I/O: openai_service.h serves
// it over HTTP.
//
// Supported request fields: model, prompt (a string, one string in an array,
// or token ids) or messages (role and content, content as a string or text
// parts), max_tokens (chat also max_completion_tokens), temperature, top_p,
// seed, stop (a string or an array), n, stream, stream_options.include_usage,
// and vLLM's extensions top_k, stop_token_ids and ignore_eos. Fields that ask
// for what the engine cannot do (logprobs, echo, best_of > 1, suffix,
// penalties other than 0, tools, response_format other than text) are
// refused with a message naming them; other unknown fields are ignored, as
// OpenAI's SDKs send some.
//
// Thread safety: stateless functions.
#ifndef TESSERA_SERVER_HTTP_OPENAI_PROTOCOL_H_
#define TESSERA_SERVER_HTTP_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/scheduler/generation.h"
#include "tessera/v1/inference.pb.h"

namespace tessera {

enum class OpenAiEndpoint { kCompletions, kChatCompletions };

inline constexpr int32_t kMaxChoices = 16;  // most `n` one request may ask for
inline constexpr size_t kMaxRequestBodyBytes = size_t{64} << 20;

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  std::string model;             // "" when absent: the base model
  v1::GenerateRequest generate;  // prompt or chat, sampling and stopping; adapter_id unset
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int32_t n = 1;
};

// Parses a request body. InvalidArgument naming the field on any mistake.
// `default_max_tokens` is what an unset max_tokens becomes.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(std::string_view body, OpenAiEndpoint endpoint,
                                                 int32_t default_max_tokens);

// Identity shared by every chunk of one response.
struct OpenAiResponseId {
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
};
OpenAiResponseId NewResponseId(OpenAiEndpoint endpoint, std::string model);

// The whole (non-streaming) response for `results`, one per choice.
nlohmann::json CompletionResponse(const OpenAiRequest& request, const OpenAiResponseId& id,
                                  const std::vector<GenerationResult>& results);

// One streamed chunk for choice `index`: text (may be empty), and the finish
// reason on its last chunk. `first` adds the chat delta's role.
nlohmann::json StreamChunk(OpenAiEndpoint endpoint, const OpenAiResponseId& id, int32_t index,
                           const std::string& text, const FinishReason* finish, bool first);
// The last chunk with stream_options.include_usage: no choices, the usage.
nlohmann::json UsageChunk(OpenAiEndpoint endpoint, const OpenAiResponseId& id,
                          const std::vector<GenerationResult>& results);

// HTTP status and OpenAI's error body for a failed request.
int HttpStatusOf(const absl::Status& status);
nlohmann::json ErrorBody(const absl::Status& status);

}  // namespace tessera

#endif  // TESSERA_SERVER_HTTP_OPENAI_PROTOCOL_H_
