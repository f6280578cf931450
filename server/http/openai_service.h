// The OpenAI-compatible HTTP API (--http-listen), sharing the scheduler,
// tenants, adapter catalog, request limits and in-flight counts with the gRPC
// Inference service:
//
//   POST /v1/completions, POST /v1/chat/completions  (stream: server-sent events)
//   GET  /v1/models   the base model and every adapter the caller may use
//   GET  /health      liveness: 200 while the process serves HTTP
//   GET  /ready       readiness: 200 once the model is loaded, 503 while draining
//
// `Authorization: Bearer KEY` authenticates as in gRPC; `model` is the base
// model's name (or empty), an adapter name, or OWNER/NAME for a shared
// adapter. Errors use OpenAI's JSON shape with the matching HTTP status. A
// client that disconnects from a streaming response cancels its request
// within ~50 ms; a non-streaming request runs to its end (the HTTP library
// gives a waiting handler no view of its socket).
//
// Thread safety: handlers run on the HTTP server's threads; everything the
// service holds outlives it.
#ifndef TESSERA_SERVER_HTTP_OPENAI_SERVICE_H_
#define TESSERA_SERVER_HTTP_OPENAI_SERVICE_H_

#include <atomic>
#include <string>

#include "server/api/inference_service.h"
#include "server/api/server_metrics.h"
#include "server/http/openai_protocol.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}

namespace tessera {

class OpenAiService {
 public:
  // env: InferenceService::env(); metrics may be null. max_tokens_limit is
  // what a chat request without max_tokens gets (clipped to the context).
  OpenAiService(const InferenceService::Env& env, std::string base_model, int32_t max_tokens_limit,
                ServerMetrics* metrics);

  // Installs the routes on `server` (before it starts).
  void Install(httplib::Server& server);

  // /ready answers 200 only between SetReady(true) and SetReady(false).
  void SetReady(bool ready) { ready_.store(ready); }
  // Generation requests in progress (for the drain on shutdown).
  int32_t active() const { return active_.load(); }

 private:
  // Sends the response (or an error) for one completions call; the status
  // is what the route's metrics count.
  void Generate(OpenAiEndpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void ListModels(const httplib::Request& req, httplib::Response& res);

  const InferenceService::Env env_;
  const std::string base_model_;
  const int32_t max_tokens_limit_;
  ServerMetrics* const metrics_;
  std::atomic<bool> ready_{false};
  std::atomic<int32_t> active_{0};
};

}  // namespace tessera

#endif  // TESSERA_SERVER_HTTP_OPENAI_SERVICE_H_
