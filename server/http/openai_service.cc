#include "server/http/openai_service.h"

#include <httplib.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/exception_guard.h"
#include "common/mutex.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

using nlohmann::json;

constexpr char kJson[] = "application/json";
// How often a streaming response that has nothing to send checks that its
// client is still connected.
constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
}

void SendError(httplib::Response& res, const absl::Status& status) {
  SendJson(res, HttpStatusOf(status), ErrorBody(status));
}

absl::StatusOr<Tenant> Authenticate(const TenantDirectory& tenants, const httplib::Request& req) {
  std::optional<std::string> header;
  if (req.has_header("Authorization")) header = req.get_header_value("Authorization");
  absl::StatusOr<Tenant> t =
      tenants.Authenticate(header ? std::optional<std::string_view>(*header) : std::nullopt);
  if (!t.ok() && t.status().code() == absl::StatusCode::kUnauthenticated) {
    return absl::UnauthenticatedError(
        absl::StrCat(t.status().message(), " (HTTP: send the key as 'Authorization: Bearer KEY')"));
  }
  return t;
}

// What the scheduler's callbacks hand the HTTP thread: per choice, text as it
// becomes final, then the result. Shared, so a callback arriving after the
// handler has gone finds it alive.
struct Channel {
  struct Event {
    int32_t index = 0;
    std::string text;
    std::optional<GenerationResult> result;
  };
  Mutex mu;
  CondVar cv;
  std::deque<Event> events ABSL_GUARDED_BY(mu);

  void Push(Event e) {
    MutexLock lock(&mu);
    events.push_back(std::move(e));
    cv.SignalAll();
  }
  // Waits up to `timeout` for events; returns what arrived (maybe none).
  std::deque<Event> Take(absl::Duration timeout) {
    MutexLock lock(&mu);
    if (events.empty()) cv.WaitWithTimeout(&mu, timeout);
    std::deque<Event> out;
    out.swap(events);
    return out;
  }
};

// One HTTP generation call: its in-flight slots, its requests' handles and
// what came back. Lives until the response is sent (shared with the stream
// provider).
struct Call {
  OpenAiRequest request;
  OpenAiResponseId id;
  std::vector<std::unique_ptr<InflightCounter::Slot>> slots;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  std::shared_ptr<Channel> channel = std::make_shared<Channel>();
  std::vector<std::optional<GenerationResult>> results;
  std::vector<bool> sent_first;
  int32_t finished = 0;
  std::atomic<int32_t>* active = nullptr;

  ~Call() {
    for (auto& h : handles) h->Cancel();  // no-op for finished requests
    if (active) active->fetch_sub(1);
  }
  bool done() const { return finished == static_cast<int32_t>(results.size()); }
  // The first failed choice's status, OK when none failed.
  absl::Status FirstError() const {
    for (const auto& r : results) {
      if (r && !r->status.ok()) return r->status;
    }
    return absl::OkStatus();
  }
  std::vector<GenerationResult> Results() const {
    std::vector<GenerationResult> out;
    for (const auto& r : results) out.push_back(r ? *r : GenerationResult{});
    return out;
  }
  void Record(Channel::Event& e) {
    if (e.result) {
      results[e.index] = std::move(e.result);
      ++finished;
    }
  }
};

std::string SseEvent(const json& data) {
  return absl::StrCat("data: ", data.dump(-1, ' ', false, json::error_handler_t::replace), "\n\n");
}

}  // namespace

OpenAiService::OpenAiService(const InferenceService::Env& env, std::string base_model, int32_t max_tokens_limit,
                             ServerMetrics* metrics)
    : env_(env), base_model_(std::move(base_model)), max_tokens_limit_(max_tokens_limit), metrics_(metrics) {}

void OpenAiService::Install(httplib::Server& server) {
  const auto counted = [this](std::string route, auto handler) {
    return [this, route, handler](const httplib::Request& req, httplib::Response& res) {
      absl::Status s = GuardExceptions(route.c_str(), [&] {
        handler(req, res);
        return absl::OkStatus();
      });
      if (!s.ok()) SendError(res, s);
      if (metrics_) metrics_->CountHttpRequest(route, res.status);
    };
  };
  // A prompt of --max-prompt-bytes, each byte escaped as \uXXXX, plus room
  // for the other fields; httplib answers 413 beyond it without buffering it.
  server.set_payload_max_length(static_cast<size_t>(
      std::min<int64_t>(kMaxRequestBodyBytes, env_.limits.max_prompt_bytes * 6 + (int64_t{1} << 20))));
  server.Get("/health", counted("/health", [](const httplib::Request&, httplib::Response& res) {
               SendJson(res, 200, {{"status", "ok"}});
             }));
  server.Get("/ready", counted("/ready", [this](const httplib::Request&, httplib::Response& res) {
               if (ready_.load()) {
                 SendJson(res, 200, {{"status", "ready"}});
               } else {
                 SendJson(res, 503, {{"status", "not ready"}});
               }
             }));
  server.Get("/v1/models", counted("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
               ListModels(req, res);
             }));
  server.Post("/v1/completions",
              counted("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
                Generate(OpenAiEndpoint::kCompletions, req, res);
              }));
  server.Post("/v1/chat/completions",
              counted("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
                Generate(OpenAiEndpoint::kChatCompletions, req, res);
              }));
  server.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || res.status < 400) return;
    absl::Status s;
    if (res.status == 404) {
      s = absl::NotFoundError(absl::StrCat(
          "no route ", req.method, " ", req.path.substr(0, 128),
          "; this server serves /v1/completions, /v1/chat/completions, /v1/models, /health, /ready"));
    } else if (res.status == 413) {
      s = absl::InvalidArgumentError(
          "the request body is too large (the prompt is limited by --max-prompt-bytes)");
    } else {
      s = absl::InvalidArgumentError(absl::StrCat("malformed HTTP request (status ", res.status, ")"));
    }
    const int status = res.status;
    SendError(res, s);
    res.status = status;
    if (metrics_) metrics_->CountHttpRequest("other", status);
  });
}

void OpenAiService::ListModels(const httplib::Request& req, httplib::Response& res) {
  absl::StatusOr<Tenant> tenant = Authenticate(*env_.tenants, req);
  if (!tenant.ok()) return SendError(res, tenant.status());
  json data = json::array();
  data.push_back({{"id", base_model_}, {"object", "model"}, {"created", 0}, {"owned_by", "tessera"}});
  for (const std::string& name : env_.catalog->StartupAdapterNames()) {
    data.push_back(
        {{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "tessera"}, {"parent", base_model_}});
  }
  for (const v1::AdapterInfo& a : env_.catalog->List(*tenant)) {
    // The caller's own adapters by name, others' (an admin sees them) by
    // reference: the `model` values that select them.
    data.push_back({{"id", a.owner() == tenant->id ? a.name() : a.reference()},
                    {"object", "model"},
                    {"created", a.created_unix_ms() / 1000},
                    {"owned_by", a.owner()},
                    {"parent", base_model_}});
  }
  SendJson(res, 200, {{"object", "list"}, {"data", std::move(data)}});
}

void OpenAiService::Generate(OpenAiEndpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  absl::StatusOr<Tenant> tenant = Authenticate(*env_.tenants, req);
  if (!tenant.ok()) return SendError(res, tenant.status());
  const int32_t default_max = endpoint == OpenAiEndpoint::kCompletions ? kDefaultMaxNewTokens : max_tokens_limit_;
  absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(req.body, endpoint, default_max);
  if (!parsed.ok()) return SendError(res, parsed.status());

  auto call = std::make_shared<Call>();
  call->request = *std::move(parsed);
  OpenAiRequest& request = call->request;
  for (int32_t i = 0; i < request.n; ++i) {
    absl::StatusOr<std::unique_ptr<InflightCounter::Slot>> slot = env_.inflight->Acquire(tenant->id);
    if (!slot.ok()) return SendError(res, slot.status());
    call->slots.push_back(*std::move(slot));
  }
  absl::StatusOr<GenerationParams> params =
      ToGenerationParams(request.generate, *env_.tokenizer, env_.limits, env_.chat_template);
  if (!params.ok()) return SendError(res, params.status());
  // A chat request without max_tokens may use the rest of the context.
  if (endpoint == OpenAiEndpoint::kChatCompletions && !request.generate.sampling().has_max_new_tokens()) {
    params->max_new_tokens = max_tokens_limit_;
  }
  params->tenant = tenant->id;
  if (!request.model.empty() && request.model != base_model_) {
    absl::StatusOr<ResolvedAdapter> adapter = env_.catalog->ResolveForUse(*tenant, request.model);
    if (!adapter.ok()) {
      absl::Status s = adapter.status();
      if (s.code() == absl::StatusCode::kNotFound) {
        s = absl::NotFoundError(absl::StrCat(s.message(), " (the base model is '", base_model_,
                                             "'; GET /v1/models lists what you may use)"));
      }
      return SendError(res, s);
    }
    params->adapter_id = adapter->key;
    params->adapter_name = adapter->name;
  }
  call->id = NewResponseId(endpoint, request.model.empty() ? base_model_ : request.model);
  call->results.resize(request.n);
  call->sent_first.assign(request.n, false);
  for (int32_t i = 0; i < request.n; ++i) {
    GenerationParams p = *params;
    // Choices of a seeded request draw from consecutive seeds, so they differ
    // and the whole response is reproducible.
    if (p.seed && i > 0) p.seed = *p.seed + static_cast<uint64_t>(i);
    GenerationCallbacks cb;
    std::weak_ptr<Channel> weak = call->channel;
    if (request.stream) {
      cb.on_delta = [weak, i](const GenerationDelta& d) {
        if (d.text.empty()) return;
        if (auto c = weak.lock()) c->Push({i, d.text, std::nullopt});
      };
    }
    cb.on_finish = [weak, i](GenerationResult r) {
      if (auto c = weak.lock()) c->Push({i, "", std::move(r)});
    };
    std::shared_ptr<RequestHandle> handle = env_.scheduler->NewHandle();
    absl::Status s = env_.scheduler->Submit(handle, std::move(p), std::move(cb));
    if (!s.ok()) return SendError(res, s);  // ~Call cancels the choices already submitted
    call->handles.push_back(std::move(handle));
  }
  active_.fetch_add(1);
  call->active = &active_;

  if (!request.stream) {
    while (!call->done()) {
      for (Channel::Event& e : call->channel->Take(absl::Seconds(1))) call->Record(e);
    }
    if (absl::Status s = call->FirstError(); !s.ok()) return SendError(res, s);
    return SendJson(res, 200, CompletionResponse(request, call->id, call->Results()));
  }

  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [call](size_t, httplib::DataSink& sink) {
        const OpenAiRequest& r = call->request;
        std::deque<Channel::Event> events = call->channel->Take(kPollInterval);
        std::string out;
        for (Channel::Event& e : events) {
          const int32_t i = e.index;
          if (e.result && !e.result->status.ok()) {
            call->Record(e);
            continue;
          }
          const FinishReason* finish = e.result ? &e.result->finish_reason : nullptr;
          if (!e.text.empty() || finish != nullptr) {
            out += SseEvent(StreamChunk(r.endpoint, call->id, i, e.text, finish, !call->sent_first[i]));
            call->sent_first[i] = true;
          }
          call->Record(e);
        }
        if (call->done()) {
          if (absl::Status s = call->FirstError(); !s.ok()) {
            out += SseEvent(ErrorBody(s));
          } else if (r.include_usage) {
            out += SseEvent(UsageChunk(r.endpoint, call->id, call->Results()));
          }
          out += "data: [DONE]\n\n";
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // the client is gone
        if (out.empty() && !sink.is_writable()) return false;
        if (call->done()) sink.done();
        return true;
      },
      // Runs when the response ends, sent or not: a client that went away
      // cancels what is still generating.
      [call](bool) {
        for (auto& h : call->handles) h->Cancel();
      });
}

}  // namespace tessera
