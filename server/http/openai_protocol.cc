#include "server/http/openai_protocol.h"

#include <limits>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/json_util.h"

namespace tessera {
namespace {

using nlohmann::json;

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("'", field, "' ", problem));
}

bool Present(const json& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

absl::StatusOr<double> Number(const json& body, const char* key, double lo, double hi) {
  const json& v = body[key];
  if (!v.is_number()) return Invalid(key, "must be a number");
  const double d = v.get<double>();
  if (!(d >= lo && d <= hi)) return Invalid(key, absl::StrCat("must be in [", lo, ", ", hi, "], not ", d));
  return d;
}

// A field that asks for something the engine cannot do: absent, null or its
// neutral value pass.
absl::Status RefuseUnsupported(const json& body, OpenAiEndpoint endpoint) {
  for (const char* key : {"frequency_penalty", "presence_penalty"}) {
    if (Present(body, key) && !(body[key].is_number() && body[key].get<double>() == 0)) {
      return Invalid(key, "is not supported by this server; send 0 or omit it");
    }
  }
  if (Present(body, "logprobs") && !(body["logprobs"].is_boolean() && !body["logprobs"].get<bool>())) {
    return Invalid("logprobs", "is not supported by this server (the engine does not return token log-probabilities)");
  }
  if (Present(body, "top_logprobs")) return Invalid("top_logprobs", "is not supported by this server");
  if (Present(body, "echo") && !(body["echo"].is_boolean() && !body["echo"].get<bool>())) {
    return Invalid("echo", "is not supported by this server");
  }
  if (Present(body, "best_of") && !(body["best_of"].is_number_integer() && body["best_of"].get<int64_t>() == 1)) {
    return Invalid("best_of", "other than 1 is not supported; use n");
  }
  if (Present(body, "suffix") && !(body["suffix"].is_string() && body["suffix"].get<std::string>().empty())) {
    return Invalid("suffix", "is not supported by this server");
  }
  if (Present(body, "logit_bias") && !(body["logit_bias"].is_object() && body["logit_bias"].empty())) {
    return Invalid("logit_bias", "is not supported by this server");
  }
  for (const char* key : {"tools", "functions", "tool_choice", "function_call"}) {
    if (Present(body, key)) return Invalid(key, "is not supported by this server (no tool calling)");
  }
  if (Present(body, "response_format")) {
    const json& f = body["response_format"];
    if (!f.is_object() || !f.contains("type") || f["type"] != "text") {
      return Invalid("response_format", "other than {\"type\": \"text\"} is not supported");
    }
  }
  if (endpoint == OpenAiEndpoint::kCompletions && Present(body, "messages")) {
    return Invalid("messages", "belongs to /v1/chat/completions; /v1/completions takes 'prompt'");
  }
  if (endpoint == OpenAiEndpoint::kChatCompletions && Present(body, "prompt")) {
    return Invalid("prompt", "belongs to /v1/completions; /v1/chat/completions takes 'messages'");
  }
  return absl::OkStatus();
}

absl::Status ParsePrompt(const json& body, v1::GenerateRequest* out) {
  if (!Present(body, "prompt")) return Invalid("prompt", "is required");
  const json& p = body["prompt"];
  if (p.is_string()) {
    out->set_text(p.get<std::string>());
    return absl::OkStatus();
  }
  if (!p.is_array() || p.empty()) return Invalid("prompt", "must be a string, or an array of token ids");
  if (p[0].is_string()) {
    if (p.size() != 1) {
      return Invalid("prompt", "with several prompts is not supported; send one request per prompt");
    }
    out->set_text(p[0].get<std::string>());
    return absl::OkStatus();
  }
  v1::TokenIds* ids = out->mutable_token_ids();
  for (const json& id : p) {
    if (id.is_array()) return Invalid("prompt", "with several prompts is not supported; send one request per prompt");
    absl::StatusOr<int64_t> v = JsonInt(id, "prompt token id", 0, std::numeric_limits<int32_t>::max());
    if (!v.ok()) return v.status();
    ids->add_ids(static_cast<int32_t>(*v));
  }
  return absl::OkStatus();
}

absl::Status ParseMessages(const json& body, v1::GenerateRequest* out) {
  if (!Present(body, "messages")) return Invalid("messages", "is required");
  const json& messages = body["messages"];
  if (!messages.is_array() || messages.empty()) return Invalid("messages", "must be a non-empty array");
  v1::Chat* chat = out->mutable_chat();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string field = absl::StrCat("messages[", i, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Invalid(field, "must be an object with a string 'role'");
    }
    v1::ChatMessage* cm = chat->add_messages();
    cm->set_role(m["role"].get<std::string>());
    if (!m.contains("content") || m["content"].is_null()) continue;
    const json& content = m["content"];
    if (content.is_string()) {
      cm->set_content(content.get<std::string>());
      continue;
    }
    if (!content.is_array()) return Invalid(field + ".content", "must be a string or an array of text parts");
    std::string text;
    for (const json& part : content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        return Invalid(field + ".content", "may only hold parts of type 'text' (this model reads text only)");
      }
      text += part["text"].get<std::string>();
    }
    cm->set_content(std::move(text));
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const json& body, v1::StoppingCriteria* out) {
  if (!Present(body, "stop")) return absl::OkStatus();
  const json& stop = body["stop"];
  if (stop.is_string()) {
    out->add_stop(stop.get<std::string>());
    return absl::OkStatus();
  }
  if (!stop.is_array()) return Invalid("stop", "must be a string or an array of strings");
  for (const json& s : stop) {
    if (!s.is_string()) return Invalid("stop", "must be a string or an array of strings");
    if (!s.get<std::string>().empty()) out->add_stop(s.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ParseSampling(const json& body, OpenAiEndpoint endpoint, int32_t default_max_tokens,
                           v1::GenerateRequest* out) {
  v1::SamplingParams* s = out->mutable_sampling();
  const char* max_key = "max_tokens";
  if (endpoint == OpenAiEndpoint::kChatCompletions && Present(body, "max_completion_tokens")) {
    max_key = "max_completion_tokens";
  }
  absl::StatusOr<int64_t> max_tokens =
      JsonIntField(body, max_key, default_max_tokens, 1, std::numeric_limits<int32_t>::max());
  if (!max_tokens.ok()) return max_tokens.status();
  s->set_max_new_tokens(static_cast<uint32_t>(*max_tokens));
  if (Present(body, "temperature")) {
    absl::StatusOr<double> t = Number(body, "temperature", 0, 2);
    if (!t.ok()) return t.status();
    s->set_temperature(static_cast<float>(*t));
  }
  if (Present(body, "top_p")) {
    absl::StatusOr<double> p = Number(body, "top_p", 0, 1);
    if (!p.ok()) return p.status();
    if (*p == 0) return Invalid("top_p", "must be above 0");
    s->set_top_p(static_cast<float>(*p));
  }
  if (Present(body, "top_k")) {
    // vLLM's convention: -1 (or 0) keeps every token.
    absl::StatusOr<int64_t> k = JsonInt(body["top_k"], "top_k", -1, std::numeric_limits<int32_t>::max());
    if (!k.ok()) return k.status();
    s->set_top_k(static_cast<uint32_t>(std::max<int64_t>(*k, 0)));
  }
  if (Present(body, "seed")) {
    absl::StatusOr<int64_t> seed = JsonInt(body["seed"], "seed", 0, std::numeric_limits<int64_t>::max());
    if (!seed.ok()) return seed.status();
    s->set_seed(static_cast<uint64_t>(*seed));
  }
  v1::StoppingCriteria* stopping = out->mutable_stopping();
  if (absl::Status st = ParseStop(body, stopping); !st.ok()) return st;
  if (Present(body, "stop_token_ids")) {
    const json& ids = body["stop_token_ids"];
    if (!ids.is_array()) return Invalid("stop_token_ids", "must be an array of token ids");
    for (const json& id : ids) {
      absl::StatusOr<int64_t> v = JsonInt(id, "stop_token_ids entry", 0, std::numeric_limits<int32_t>::max());
      if (!v.ok()) return v.status();
      stopping->add_stop_token_ids(static_cast<int32_t>(*v));
    }
  }
  if (Present(body, "ignore_eos")) {
    if (!body["ignore_eos"].is_boolean()) return Invalid("ignore_eos", "must be true or false");
    stopping->set_ignore_eos(body["ignore_eos"].get<bool>());
  }
  return absl::OkStatus();
}

json Usage(const std::vector<GenerationResult>& results) {
  int64_t prompt = results.empty() ? 0 : results[0].prompt_tokens;
  int64_t completion = 0;
  for (const GenerationResult& r : results) completion += r.completion_tokens;
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

const char* ObjectName(OpenAiEndpoint endpoint, bool chunk) {
  if (endpoint == OpenAiEndpoint::kCompletions) return "text_completion";
  return chunk ? "chat.completion.chunk" : "chat.completion";
}

json Envelope(OpenAiEndpoint endpoint, const OpenAiResponseId& id, bool chunk) {
  return {{"id", id.id}, {"object", ObjectName(endpoint, chunk)}, {"created", id.created}, {"model", id.model}};
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(std::string_view text, OpenAiEndpoint endpoint,
                                                 int32_t default_max_tokens) {
  absl::StatusOr<json> parsed = ParseJson(text, "request body", kMaxRequestBodyBytes);
  if (!parsed.ok()) return parsed.status();
  const json& body = *parsed;
  if (!body.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  OpenAiRequest r;
  r.endpoint = endpoint;
  if (absl::Status s = RefuseUnsupported(body, endpoint); !s.ok()) return s;
  if (Present(body, "model")) {
    if (!body["model"].is_string()) return Invalid("model", "must be a string");
    r.model = body["model"].get<std::string>();
  }
  absl::Status s = endpoint == OpenAiEndpoint::kCompletions ? ParsePrompt(body, &r.generate)
                                                           : ParseMessages(body, &r.generate);
  if (!s.ok()) return s;
  if (s = ParseSampling(body, endpoint, default_max_tokens, &r.generate); !s.ok()) return s;
  absl::StatusOr<int64_t> n = JsonIntField(body, "n", 1, 1, kMaxChoices);
  if (!n.ok()) return n.status();
  r.n = static_cast<int32_t>(*n);
  if (Present(body, "stream")) {
    if (!body["stream"].is_boolean()) return Invalid("stream", "must be true or false");
    r.stream = body["stream"].get<bool>();
  }
  if (Present(body, "stream_options")) {
    const json& o = body["stream_options"];
    if (!o.is_object()) return Invalid("stream_options", "must be an object");
    if (!r.stream) return Invalid("stream_options", "is only allowed with stream: true");
    if (o.contains("include_usage") && !o["include_usage"].is_null()) {
      if (!o["include_usage"].is_boolean()) return Invalid("stream_options.include_usage", "must be true or false");
      r.include_usage = o["include_usage"].get<bool>();
    }
  }
  if (Present(body, "user")) {
    if (!body["user"].is_string() || body["user"].get<std::string>().size() > 256) {
      return Invalid("user", "must be a string of at most 256 bytes");
    }
    r.generate.set_request_id(body["user"].get<std::string>());
  }
  return r;
}

OpenAiResponseId NewResponseId(OpenAiEndpoint endpoint, std::string model) {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  uint64_t a, b;
  {
    absl::MutexLock lock(&mu);
    a = absl::Uniform<uint64_t>(*gen);
    b = absl::Uniform<uint64_t>(*gen);
  }
  OpenAiResponseId id;
  id.id = absl::StrFormat("%s-%016x%016x", endpoint == OpenAiEndpoint::kCompletions ? "cmpl" : "chatcmpl", a, b);
  id.created = absl::ToUnixSeconds(absl::Now());
  id.model = std::move(model);
  return id;
}

nlohmann::json CompletionResponse(const OpenAiRequest& request, const OpenAiResponseId& id,
                                  const std::vector<GenerationResult>& results) {
  json out = Envelope(request.endpoint, id, /*chunk=*/false);
  json choices = json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    json c = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", FinishReasonName(results[i].finish_reason)}};
    if (request.endpoint == OpenAiEndpoint::kCompletions) {
      c["text"] = results[i].text;
    } else {
      c["message"] = {{"role", "assistant"}, {"content", results[i].text}};
    }
    choices.push_back(std::move(c));
  }
  out["choices"] = std::move(choices);
  out["usage"] = Usage(results);
  return out;
}

nlohmann::json StreamChunk(OpenAiEndpoint endpoint, const OpenAiResponseId& id, int32_t index,
                           const std::string& text, const FinishReason* finish, bool first) {
  json out = Envelope(endpoint, id, /*chunk=*/true);
  json c = {{"index", index},
            {"logprobs", nullptr},
            {"finish_reason", finish ? json(FinishReasonName(*finish)) : json(nullptr)}};
  if (endpoint == OpenAiEndpoint::kCompletions) {
    c["text"] = text;
  } else {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || finish == nullptr) delta["content"] = text;
    c["delta"] = std::move(delta);
  }
  out["choices"] = json::array({std::move(c)});
  return out;
}

nlohmann::json UsageChunk(OpenAiEndpoint endpoint, const OpenAiResponseId& id,
                          const std::vector<GenerationResult>& results) {
  json out = Envelope(endpoint, id, /*chunk=*/true);
  out["choices"] = json::array();
  out["usage"] = Usage(results);
  return out;
}

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

nlohmann::json ErrorBody(const absl::Status& status) {
  const int http = HttpStatusOf(status);
  const char* type = "server_error";
  if (http == 400 || http == 404 || http == 409) type = "invalid_request_error";
  if (http == 401) type = "authentication_error";
  if (http == 403) type = "permission_error";
  if (http == 429) type = "rate_limit_error";
  std::string code = absl::StatusCodeToString(status.code());
  for (char& ch : code) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return {{"error", {{"message", std::string(status.message())}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

}  // namespace tessera
