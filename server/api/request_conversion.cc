#include "server/api/request_conversion.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "model/utf8.h"

namespace tessera {

namespace {

// Tokenizes a prompt text after checking that it cannot exceed the limits.
absl::StatusOr<std::vector<int32_t>> EncodePrompt(absl::string_view text, const Tokenizer& tokenizer,
                                                  const RequestLimits& limits, bool add_special,
                                                  absl::string_view what) {
  const int64_t bytes = static_cast<int64_t>(text.size());
  if (bytes > limits.max_prompt_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is ", bytes, " bytes, over the limit of ",
                                                   limits.max_prompt_bytes, " bytes (--max-prompt-bytes)"));
  }
  const int64_t min_tokens = tokenizer.MinTokensForBytes(bytes);
  if (limits.context_length > 0 && min_tokens > limits.context_length) {
    return absl::InvalidArgumentError(absl::StrCat(what, " of ", bytes, " bytes is at least ", min_tokens,
                                                   " tokens, over the context length of ", limits.context_length,
                                                   " tokens; shorten the prompt"));
  }
  return tokenizer.Encode(std::string_view(text.data(), text.size()), add_special);
}

absl::StatusOr<std::vector<int32_t>> EncodeChat(const v1::Chat& chat, const Tokenizer& tokenizer,
                                                const RequestLimits& limits, const ChatTemplate* chat_template) {
  if (chat_template == nullptr) {
    return absl::FailedPreconditionError(
        "this model has no chat template (no chat_template in tokenizer_config.json and no chat_template.jinja); "
        "send the prompt as text");
  }
  if (chat.messages().empty()) return absl::InvalidArgumentError("the chat has no messages");
  if (chat.messages_size() > limits.max_chat_messages) {
    return absl::InvalidArgumentError(absl::StrCat("the chat has ", chat.messages_size(),
                                                   " messages, over the limit of ", limits.max_chat_messages));
  }
  std::vector<ChatMessage> messages;
  int64_t bytes = 0;
  for (const v1::ChatMessage& m : chat.messages()) {
    if (m.role().empty() || m.role().size() > 64) {
      return absl::InvalidArgumentError("every chat message needs a role of 1 to 64 bytes (user, assistant, ...)");
    }
    if (!IsValidUtf8(m.role()) || !IsValidUtf8(m.content())) {
      return absl::InvalidArgumentError("chat messages must be valid UTF-8");
    }
    bytes += static_cast<int64_t>(m.role().size() + m.content().size());
    if (bytes > limits.max_prompt_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("the chat's messages are over the limit of ",
                                                     limits.max_prompt_bytes, " bytes (--max-prompt-bytes)"));
    }
    messages.push_back({m.role(), m.content()});
  }
  absl::StatusOr<std::string> prompt = chat_template->Render(messages, /*add_generation_prompt=*/true);
  if (!prompt.ok()) {
    return absl::Status(prompt.status().code() == absl::StatusCode::kResourceExhausted
                            ? absl::StatusCode::kResourceExhausted
                            : absl::StatusCode::kInvalidArgument,
                        prompt.status().message());
  }
  return EncodePrompt(*prompt, tokenizer, limits, /*add_special=*/false, "the rendered chat prompt");
}

}  // namespace

absl::StatusOr<GenerationParams> ToGenerationParams(const v1::GenerateRequest& req, const Tokenizer& tokenizer,
                                                    const RequestLimits& limits, const ChatTemplate* chat) {
  GenerationParams p;
  if (req.stopping().stop_size() > limits.max_stop_strings) {
    return absl::InvalidArgumentError(absl::StrCat("the request has ", req.stopping().stop_size(),
                                                   " stop strings, over the limit of ", limits.max_stop_strings,
                                                   " (--max-stop-strings)"));
  }
  for (const std::string& stop : req.stopping().stop()) {
    if (static_cast<int64_t>(stop.size()) > limits.max_stop_string_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("a stop string of ", stop.size(),
                                                     " bytes is over the limit of ", limits.max_stop_string_bytes,
                                                     " (--max-stop-string-bytes)"));
    }
  }
  if (req.request_id().size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id is ", req.request_id().size(), " bytes, over the limit of 256"));
  }
  if (req.adapter_id().size() > 512) {
    return absl::InvalidArgumentError(
        absl::StrCat("adapter_id is ", req.adapter_id().size(), " bytes, over the limit of 512"));
  }
  switch (req.prompt_case()) {
    case v1::GenerateRequest::kText: {
      // Checked before encoding: a tokenizer that adds BOS would turn "" into
      // a one-token prompt.
      if (req.text().empty()) {
        return absl::InvalidArgumentError("prompt is empty: send prompt text or at least one token id");
      }
      absl::StatusOr<std::vector<int32_t>> ids = EncodePrompt(req.text(), tokenizer, limits, true, "prompt text");
      if (!ids.ok()) return ids.status();
      p.prompt_ids = *std::move(ids);
      break;
    }
    case v1::GenerateRequest::kChat: {
      absl::StatusOr<std::vector<int32_t>> ids = EncodeChat(req.chat(), tokenizer, limits, chat);
      if (!ids.ok()) return ids.status();
      p.prompt_ids = *std::move(ids);
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      p.prompt_ids.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
      break;
    case v1::GenerateRequest::PROMPT_NOT_SET:
      break;  // no ids: Scheduler::Submit rejects the empty prompt
  }
  const v1::SamplingParams& s = req.sampling();
  if (s.has_max_new_tokens()) {
    p.max_new_tokens =
        static_cast<int32_t>(std::min<uint32_t>(s.max_new_tokens(), std::numeric_limits<int32_t>::max()));
  } else {
    p.max_new_tokens = kDefaultMaxNewTokens;
  }
  p.temperature = s.has_temperature() ? s.temperature() : limits.defaults.temperature;
  p.top_k = s.has_top_k() ? static_cast<int32_t>(std::min<uint32_t>(s.top_k(), std::numeric_limits<int32_t>::max()))
                          : limits.defaults.top_k;
  p.top_p = s.has_top_p() ? s.top_p() : limits.defaults.top_p;
  if (s.has_seed()) p.seed = s.seed();
  p.stop_strings.assign(req.stopping().stop().begin(), req.stopping().stop().end());
  p.stop_token_ids.assign(req.stopping().stop_token_ids().begin(), req.stopping().stop_token_ids().end());
  p.ignore_eos = req.stopping().ignore_eos();
  p.adapter_id = req.adapter_id();
  p.request_id = req.request_id();
  return p;
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop:
    case FinishReason::kEos:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

namespace {
template <typename Message>
void FillSummary(const GenerationResult& r, Message* m) {
  m->set_finish_reason(ToProto(r.finish_reason));
  m->mutable_usage()->set_prompt_tokens(r.prompt_tokens);
  m->mutable_usage()->set_completion_tokens(r.completion_tokens);
  m->mutable_timings()->set_queue_ms(r.queue_ms);
  m->mutable_timings()->set_time_to_first_token_ms(r.time_to_first_token_ms);
  m->mutable_timings()->set_total_ms(r.total_ms);
  m->set_seed(r.seed);
}
}  // namespace

void FillResponse(const GenerationResult& r, v1::GenerateResponse* response) {
  response->mutable_token_ids()->Assign(r.token_ids.begin(), r.token_ids.end());
  response->set_text(r.text);
  FillSummary(r, response);
}

void FillFinalStreamMessage(const GenerationResult& r, v1::GenerateStreamResponse* m) { FillSummary(r, m); }

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace tessera
