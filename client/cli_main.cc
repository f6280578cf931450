// tessera: command-line client.
//   tessera generate --server ADDR --prompt TEXT [--stream] [--max-new-tokens N]
//                    [--temperature T] [--top-k K] [--top-p P] [--seed S]
//                    [--stop S1,S2] [--ignore-eos] [--adapter ID] [--json]
//   tessera info --server ADDR [--json]
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/tessera_client.h"
#include "common/flags.h"
#include "google/protobuf/util/json_util.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "server address host:port");
ABSL_FLAG(std::string, prompt, "", "prompt text");
ABSL_FLAG(bool, stream, false, "print text as it is generated");
ABSL_FLAG(int, max_new_tokens, 16, "tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "0 is greedy");
ABSL_FLAG(int, top_k, 0, "0 disables top-k");
ABSL_FLAG(double, top_p, 1.0, "nucleus mass in (0, 1]");
ABSL_FLAG(int64_t, seed, -1, "sampling seed; -1 lets the server choose (and report) one");
ABSL_FLAG(std::vector<std::string>, stop, {}, "comma-separated stop strings");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past end-of-sequence");
ABSL_FLAG(std::string, adapter, "", "adapter id (empty: base model)");
ABSL_FLAG(bool, json, false, "print responses as JSON (one object per line when streaming)");
ABSL_FLAG(double, timeout, 600, "seconds to wait for the response");
ABSL_FLAG(double, connect_timeout, 10, "seconds to wait for the server to accept the connection");

namespace tessera {
namespace {

constexpr char kUsage[] =
    "Tessera command-line client.\n"
    "  tessera generate --server ADDR --prompt TEXT [--stream] [--max-new-tokens N]\n"
    "                   [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop A,B]\n"
    "                   [--ignore-eos] [--adapter ID] [--json]\n"
    "  tessera info --server ADDR [--json]";

int Error(const absl::Status& s) {
  std::fprintf(stderr, "error: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
               std::string(s.message()).c_str());
  return 1;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

int Generate(TesseraClient& client) {
  v1::GenerateRequest req;
  req.set_text(absl::GetFlag(FLAGS_prompt));
  v1::SamplingParams* s = req.mutable_sampling();
  s->set_max_new_tokens(static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_max_new_tokens))));
  s->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  s->set_top_k(static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_top_k))));
  s->set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  if (absl::GetFlag(FLAGS_seed) >= 0) s->set_seed(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) req.mutable_stopping()->add_stop(stop);
  req.mutable_stopping()->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  req.set_adapter_id(absl::GetFlag(FLAGS_adapter));
  const absl::Duration deadline = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  const bool json = absl::GetFlag(FLAGS_json);

  if (absl::GetFlag(FLAGS_stream)) {
    absl::Status st = client.GenerateStream(
        req,
        [&](const v1::GenerateStreamResponse& m) {
          if (json) {
            std::cout << ToJson(m) << std::endl;
          } else {
            std::cout << m.text_delta() << std::flush;
          }
        },
        deadline);
    if (!json) std::cout << std::endl;
    return st.ok() ? 0 : Error(st);
  }
  absl::StatusOr<v1::GenerateResponse> r = client.Generate(req, deadline);
  if (!r.ok()) return Error(r.status());
  if (json) {
    std::cout << ToJson(*r) << std::endl;
  } else {
    std::cout << r->text() << std::endl;
  }
  return 0;
}

int Info(TesseraClient& client) {
  absl::StatusOr<v1::ServerInfoResponse> r = client.ServerInfo();
  if (!r.ok()) return Error(r.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*r) << std::endl;
    return 0;
  }
  std::cout << "model:          " << r->model() << " (" << r->architecture() << ")\n"
            << "dtype:          " << r->dtype() << ", computes in " << r->compute_dtype() << "\n"
            << "quantization:   " << r->quantization() << " (high precision:";
  for (const std::string& w : r->high_precision_weights()) std::cout << " " << w;
  std::cout << ")\n"
            << "weights:        " << r->weight_bytes() / 1048576.0 << " MiB (load peak RSS "
            << r->load_peak_rss_bytes() / 1048576.0 << " MiB)\n"
            << "context length: " << r->context_length() << " (" << r->context_limit_reason() << ")\n"
            << "vocab size:     " << r->vocab_size() << "\n"
            << "max batch size: " << r->max_batch_size() << "\n"
            << "backend:        " << r->backend() << "\n"
            << "adapter kinds:  " << (r->adapter_kinds().empty() ? "(none)" : "");
  for (int i = 0; i < r->adapter_kinds_size(); ++i) std::cout << (i ? ", " : "") << r->adapter_kinds(i);
  std::cout << "\nadapters:       " << (r->loaded_adapters().empty() ? "(none)" : "");
  for (int i = 0; i < r->loaded_adapters_size(); ++i) std::cout << (i ? ", " : "") << r->loaded_adapters(i);
  std::cout << "\nversion:        " << r->version() << std::endl;
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  const std::vector<std::string> rest = tessera::ParseFlags(argc, argv, tessera::kUsage);
  if (rest.size() != 2) {
    std::fprintf(stderr, "%s\n", tessera::kUsage);
    return 2;
  }
  const std::string command = rest[1];
  if (command != "generate" && command != "info") {
    std::fprintf(stderr, "unknown command '%s'\n%s\n", command.c_str(), tessera::kUsage);
    return 2;
  }
  if (command == "generate" && absl::GetFlag(FLAGS_prompt).empty()) {
    std::fprintf(stderr, "generate needs --prompt TEXT\n");
    return 2;
  }
  auto client = tessera::TesseraClient::Connect(absl::GetFlag(FLAGS_server),
                                                absl::Seconds(absl::GetFlag(FLAGS_connect_timeout)));
  if (!client.ok()) return tessera::Error(client.status());
  return command == "generate" ? tessera::Generate(**client) : tessera::Info(**client);
}
