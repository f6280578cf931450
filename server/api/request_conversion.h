// Conversions between the tessera.v1 API messages and the scheduler's types.
// Parameter checks live in Scheduler::Submit, so the server and the offline
// batch tool reject exactly the same requests.
#ifndef TESSERA_SERVER_API_REQUEST_CONVERSION_H_
#define TESSERA_SERVER_API_REQUEST_CONVERSION_H_

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"
#include "model/chat_template.h"
#include "model/generation_config.h"
#include "model/tokenizer.h"
#include "server/scheduler/generation.h"
#include "tessera/v1/inference.pb.h"

namespace tessera {

inline constexpr int32_t kDefaultMaxNewTokens = 16;

// Per-request size limits checked before any work is done for a request
// (each refusal names its flag).
struct RequestLimits {
  int64_t max_prompt_bytes = 1 << 20;  // --max-prompt-bytes
  int64_t context_length = 0;          // tokens; 0: not checked here (Scheduler::Submit checks)
  int32_t max_stop_strings = 16;       // --max-stop-strings
  int32_t max_stop_string_bytes = 256;  // --max-stop-string-bytes
  int32_t max_chat_messages = 1024;     // messages of one chat request
  GenerationDefaults defaults;          // for unset sampling fields
};

// Checks the limits, renders chat requests with `chat` (null: the model has
// no template, and chat requests are FAILED_PRECONDITION), tokenizes text
// prompts (after checking that the text cannot exceed the context length, so
// encoding time is bounded), and fills defaults for unset fields.
absl::StatusOr<GenerationParams> ToGenerationParams(const v1::GenerateRequest& request,
                                                    const Tokenizer& tokenizer, const RequestLimits& limits = {},
                                                    const ChatTemplate* chat = nullptr);

v1::FinishReason ToProto(FinishReason reason);
void FillResponse(const GenerationResult& result, v1::GenerateResponse* response);
void FillFinalStreamMessage(const GenerationResult& result, v1::GenerateStreamResponse* message);

// absl and gRPC share status codes.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Finishes a unary callback call with status at once: the reactor to return.
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, const absl::Status& status);

}  // namespace tessera

#endif  // TESSERA_SERVER_API_REQUEST_CONVERSION_H_
