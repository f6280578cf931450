// tessera: command-line client.
//   tessera [--server ADDR] [--api-key KEY] [--json] COMMAND ...
//   tessera generate --prompt TEXT [--chat [--system TEXT]] [--stream] [--max-new-tokens N] [--temperature T] [--top-k K]
//                    [--top-p P] [--seed S] [--stop S1,S2] [--ignore-eos] [--adapter REF]
//   tessera info
//   tessera adapters upload DIR --name NAME [--shared] [--description TEXT] [--kind KIND]
//   tessera adapters list
//   tessera adapters info REF
//   tessera adapters rm REF
//   tessera adapters prefetch REF
// --api-key defaults to $TESSERA_API_KEY and is sent as `authorization: Bearer KEY` on every call.
// Failures print `error: CODE: message` on stderr and exit non-zero (2 for a usage error, 1 otherwise).
// `adapters upload` draws a progress bar on stderr when stderr is a terminal.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/tessera_client.h"
#include "common/flags.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "server address host:port");
ABSL_FLAG(std::string, api_key, "",
          "API key, sent as `authorization: Bearer KEY`; empty: the TESSERA_API_KEY environment variable");
ABSL_FLAG(bool, json, false, "print responses as JSON (one object per line when streaming)");
ABSL_FLAG(double, timeout, 0,
          "seconds to wait for the response; 0: the command's default (generate 600 s, adapters upload "
          "30 min, adapters prefetch 5 min, others 30 s)");
ABSL_FLAG(bool, tls, false, "connect with TLS (a server started with --tls-cert)");
ABSL_FLAG(std::string, ca, "", "with --tls: PEM file of the CA that issued the server's certificate");
ABSL_FLAG(std::string, tls_cert, "", "with --tls: client certificate (PEM) for a server that requires mTLS");
ABSL_FLAG(std::string, tls_key, "", "with --tls: the client certificate's private key (PEM)");
ABSL_FLAG(double, connect_timeout, 10, "seconds to wait for the server to accept the connection");
// generate
ABSL_FLAG(std::string, prompt, "", "prompt text (generate, tokenize)");
ABSL_FLAG(bool, chat, false,
          "generate: send --prompt as a user message through the model's chat template (with --system first)");
ABSL_FLAG(std::string, system, "", "generate --chat: a system message before the user's");
ABSL_FLAG(bool, add_special_tokens, false, "tokenize: add the tokenizer's special tokens (BOS, ...)");
ABSL_FLAG(std::vector<std::string>, ids, {}, "detokenize: token ids, comma-separated");
ABSL_FLAG(bool, skip_special_tokens, false, "detokenize: leave special tokens out");
ABSL_FLAG(bool, stream, false, "print text as it is generated");
ABSL_FLAG(int, max_new_tokens, 16, "tokens to generate");
ABSL_FLAG(std::optional<double>, temperature, std::nullopt,
          "0 is greedy; unset: the server's default for the model (see `tessera info`)");
ABSL_FLAG(std::optional<int>, top_k, std::nullopt, "0 disables top-k; unset: the server's default");
ABSL_FLAG(std::optional<double>, top_p, std::nullopt, "nucleus mass in (0, 1]; unset: the server's default");
ABSL_FLAG(int64_t, seed, -1, "sampling seed; -1 lets the server choose (and report) one");
ABSL_FLAG(std::vector<std::string>, stop, {}, "comma-separated stop strings");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past end-of-sequence");
ABSL_FLAG(std::string, adapter, "", "adapter reference, NAME or OWNER/NAME (empty: base model)");
// adapters upload
ABSL_FLAG(std::string, name, "", "adapters upload: name of the new adapter");
ABSL_FLAG(bool, shared, false, "adapters upload: let every tenant use the adapter (default: private)");
ABSL_FLAG(std::string, description, "", "adapters upload: free-text description");
ABSL_FLAG(std::string, kind, "",
          "adapters upload: expected kind (lora, seal, road, diablo); empty: as adapter_config.json says");
// watermark
ABSL_FLAG(std::string, passport, "", "watermark: passport.safetensors (tensor C), as in owner_secret/");
ABSL_FLAG(std::string, raw_factors, "",
          "watermark: original_lora.safetensors (raw LoRA factors B, A), as in owner_secret/");
ABSL_FLAG(std::string, credential, "", "watermark verify: id of a registered credential");

namespace tessera {
namespace {

constexpr char kUsage[] =
    "Tessera command-line client.\n"
    "  tessera [--server ADDR] [--api-key KEY] [--json] COMMAND ...\n"
    "  tessera generate --prompt TEXT [--chat [--system TEXT]] [--stream] [--max-new-tokens N] [--temperature T]\n"
    "                   [--top-k K] [--top-p P] [--seed S] [--stop A,B] [--ignore-eos]\n"
    "                   [--adapter REF]\n"
    "  tessera info\n"
    "  tessera tokenize --prompt TEXT [--add-special-tokens]\n"
    "  tessera detokenize --ids 1,2,3 [--skip-special-tokens]\n"
    "  tessera adapters upload DIR --name NAME [--shared] [--description TEXT] [--kind KIND]\n"
    "  tessera adapters list\n"
    "  tessera adapters info REF\n"
    "  tessera adapters rm REF\n"
    "  tessera adapters prefetch REF\n"
    "  tessera watermark register ID --passport FILE --raw-factors FILE\n"
    "  tessera watermark verify --adapter REF (--credential ID | --passport FILE --raw-factors FILE)\n"
    "DIR holds adapter_config.json and adapter_model.safetensors. REF is NAME (your own adapter)\n"
    "or OWNER/NAME (another tenant's shared one). --api-key defaults to $TESSERA_API_KEY.\n"
    "'tessera COMMAND --help' lists one command's flags.";

int Error(const absl::Status& s) {
  std::fprintf(stderr, "error: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
               std::string(s.message()).c_str());
  return 1;
}

// A command line that names no valid command: the error, the usage and a hint; exit status 2.
int UsageError(const std::string& message) {
  Error(absl::InvalidArgumentError(message));
  std::fprintf(stderr, "\n%s\n(run 'tessera --help' for every flag)\n", kUsage);
  return 2;
}

// absl::ParseCommandLine would reject an unknown flag with its own message and exit status; find it first
// so that it is reported like every other usage error. Returns the flag as spelled ("--bogus-flag"), or
// "" when every flag is known.
std::string FindUnknownFlag(int argc, char** argv) {
  const std::vector<std::string> args = NormalizeFlagNames(argc, argv);
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    const size_t start = a[1] == '-' ? 2 : 1;
    const size_t eq = a.find('=');
    const std::string name = a.substr(start, eq == std::string::npos ? std::string::npos : eq - start);
    if (name == "undefok") return "";  // absl decides
    // Handled by absl::ParseCommandLine itself, not registered flags in every absl version.
    static constexpr const char* kBuiltin[] = {"help",   "helpfull",  "helpshort",       "helppackage",
                                               "helpon", "helpmatch", "only_check_args", "version",
                                               "config",  "flagfile"};
    if (std::find(std::begin(kBuiltin), std::end(kBuiltin), name) != std::end(kBuiltin)) continue;
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) {
      const absl::CommandLineFlag* positive =
          absl::StartsWith(name, "no") ? absl::FindCommandLineFlag(name.substr(2)) : nullptr;
      if (positive != nullptr && positive->IsOfType<bool>()) continue;  // --nojson
      return "--" + absl::StrReplaceAll(name, {{"_", "-"}});
    }
    if (eq == std::string::npos && !flag->IsOfType<bool>()) ++i;  // "--name VALUE": skip the value
  }
  return "";
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  // Finish reasons in the spelling every Tessera API shares ("stop",
  // "length", "cancelled"; null before the last stream message), not the
  // enum's names.
  nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("finish_reason") || !j["finish_reason"].is_string()) return out;
  const std::string full = j["finish_reason"].get<std::string>();
  absl::string_view view = full;
  if (absl::ConsumePrefix(&view, "FINISH_REASON_")) {
    std::string reason(view);
    if (reason == "UNSPECIFIED") {
      j["finish_reason"] = nullptr;
    } else {
      for (char& c : reason) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      j["finish_reason"] = reason == "eos" ? "stop" : reason;
    }
  }
  return j.dump();
}

// Each command's own flags, for `tessera COMMAND --help`.
struct CommandHelp {
  const char* command;
  const char* usage;
  std::vector<const char*> flags;
};

const std::vector<CommandHelp>& Commands() {
  static const auto* commands = new std::vector<CommandHelp>{
      {"generate", "tessera generate --prompt TEXT [flags]: generates a completion (the base model, or --adapter)",
       {"prompt", "chat", "system", "stream", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop",
        "ignore_eos", "adapter"}},
      {"info", "tessera info: describes the served model and this server", {}},
      {"tokenize", "tessera tokenize --prompt TEXT: the model's token ids for a text", {"prompt", "add_special_tokens"}},
      {"detokenize", "tessera detokenize --ids 1,2,3: the text of token ids", {"ids", "skip_special_tokens"}},
      {"adapters",
       "tessera adapters upload DIR --name NAME | list | info REF | rm REF | prefetch REF: manage your adapters",
       {"name", "shared", "description", "kind"}},
      {"watermark",
       "tessera watermark register ID --passport FILE --raw-factors FILE | verify --adapter REF "
       "(--credential ID | --passport FILE --raw-factors FILE): SEAL ownership",
       {"passport", "raw_factors", "credential", "adapter"}},
  };
  return *commands;
}

void PrintFlag(const char* name) {
  const absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
  if (f == nullptr) return;
  std::string dashed = name;
  std::replace(dashed.begin(), dashed.end(), '_', '-');
  std::printf("  --%s  %s (default: %s)\n", dashed.c_str(), f->Help().c_str(),
              f->DefaultValue().empty() ? "\"\"" : f->DefaultValue().c_str());
}

// `tessera COMMAND --help` (or -h, -help): that command's usage and flags,
// then the connection flags every command takes. False when argv asks for
// no command's help.
bool PrintCommandHelp(int argc, char** argv) {
  const CommandHelp* command = nullptr;
  bool help = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-help" || a == "-h" || a == "--helpshort") help = true;
    for (const CommandHelp& c : Commands()) {
      if (command == nullptr && a == c.command) command = &c;
    }
  }
  if (!help || command == nullptr) return false;
  std::printf("%s\n", command->usage);
  if (!command->flags.empty()) std::printf("\n%s flags:\n", command->command);
  for (const char* f : command->flags) PrintFlag(f);
  std::printf("\nconnection flags (every command):\n");
  for (const char* f : {"server", "api_key", "json", "timeout", "connect_timeout", "tls", "ca", "tls_cert", "tls_key"}) {
    PrintFlag(f);
  }
  return true;
}

// --api-key, else $TESSERA_API_KEY.
std::string ApiKey() {
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (key.empty()) {
    const char* env = std::getenv("TESSERA_API_KEY");
    if (env != nullptr) key = env;
  }
  return key;
}

// --timeout when set (> 0), else the command's own `fallback`.
absl::Duration Deadline(absl::Duration fallback) {
  const double seconds = absl::GetFlag(FLAGS_timeout);
  return seconds > 0 ? absl::Seconds(seconds) : fallback;
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  if (bytes < (uint64_t{1} << 20)) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  if (bytes < (uint64_t{1} << 30)) return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
  return absl::StrFormat("%.2f GiB", bytes / 1073741824.0);
}

std::string VisibilityName(v1::Visibility v) {
  switch (v) {
    case v1::VISIBILITY_UNSPECIFIED:
    case v1::VISIBILITY_PRIVATE:
      return "private";
    case v1::VISIBILITY_SHARED:
      return "shared";
    default:
      return absl::StrCat("visibility ", static_cast<int>(v));
  }
}

std::string StateName(v1::AdapterState s) {
  switch (s) {
    case v1::ADAPTER_STATE_UNSPECIFIED:
      return "-";
    case v1::ADAPTER_STATE_STORED:
      return "stored";
    case v1::ADAPTER_STATE_RESIDENT:
      return "resident";
    case v1::ADAPTER_STATE_PINNED:
      return "pinned";
    default:
      return absl::StrCat("state ", static_cast<int>(s));
  }
}

std::string RankText(const v1::AdapterInfo& a) { return a.rank() == 0 ? "-" : absl::StrCat(a.rank()); }

void PrintAdapter(const v1::AdapterInfo& a, bool with_config) {
  std::cout << "reference:   " << a.reference() << "\n"
            << "kind:        " << a.kind() << "\n"
            << "rank:        " << RankText(a) << "\n"
            << "stored:      " << FormatBytes(a.stored_bytes()) << " (" << a.stored_bytes() << " bytes)\n"
            << "resident:    " << FormatBytes(a.resident_bytes()) << " when loaded\n"
            << "sha256:      " << a.sha256() << "\n"
            << "visibility:  " << VisibilityName(a.visibility()) << "\n"
            << "state:       " << StateName(a.state()) << "\n";
  if (a.created_unix_ms() != 0) {
    std::cout << "created:     "
              << absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMillis(a.created_unix_ms()),
                                  absl::UTCTimeZone())
              << "\n";
  }
  if (!a.description().empty()) std::cout << "description: " << a.description() << "\n";
  if (!a.watermark_flag().empty()) std::cout << "watermark flag: " << a.watermark_flag() << "\n";
  if (with_config && !a.config_json().empty()) {
    std::cout << "config:\n";
    for (absl::string_view line : absl::StrSplit(absl::StripTrailingAsciiWhitespace(a.config_json()), '\n')) {
      std::cout << "  " << line << "\n";
    }
  }
  std::cout << std::flush;
}

// `uploading NAME  [#####.....]  42%  3.1/7.4 MiB` on stderr, redrawn in place; silent when stderr is
// not a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(std::string name) : name_(std::move(name)), enabled_(isatty(STDERR_FILENO) != 0) {}

  void Update(int64_t sent, int64_t total) {
    if (!enabled_) return;
    constexpr int kWidth = 30;
    const double fraction = total > 0 ? std::clamp(static_cast<double>(sent) / total, 0.0, 1.0) : 1.0;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string text = absl::StrFormat("uploading %s  [%s%s]  %3d%%  %.1f/%.1f MiB", name_,
                                       std::string(filled, '#'), std::string(kWidth - filled, '.'),
                                       static_cast<int>(fraction * 100), sent / 1048576.0, total / 1048576.0);
    if (text == last_) return;
    const size_t width = text.size();
    if (text.size() < last_.size()) text.append(last_.size() - text.size(), ' ');
    std::fprintf(stderr, "\r%s", text.c_str());
    std::fflush(stderr);
    last_ = std::move(text);
    last_.resize(width);
  }

  // Ends the bar's line, so that what follows starts on a fresh one.
  void Finish() {
    if (!last_.empty()) std::fputc('\n', stderr);
    last_.clear();
  }

 private:
  std::string name_;
  bool enabled_;
  std::string last_;
};

int Generate(TesseraClient& client) {
  v1::GenerateRequest req;
  if (absl::GetFlag(FLAGS_chat)) {
    v1::Chat* chat = req.mutable_chat();
    if (!absl::GetFlag(FLAGS_system).empty()) {
      v1::ChatMessage* m = chat->add_messages();
      m->set_role("system");
      m->set_content(absl::GetFlag(FLAGS_system));
    }
    v1::ChatMessage* m = chat->add_messages();
    m->set_role("user");
    m->set_content(absl::GetFlag(FLAGS_prompt));
  } else {
    req.set_text(absl::GetFlag(FLAGS_prompt));
  }
  v1::SamplingParams* s = req.mutable_sampling();
  s->set_max_new_tokens(static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_max_new_tokens))));
  // Unset on the command line: the server's default (the model's
  // generation_config.json, else greedy).
  if (const std::optional<double> t = absl::GetFlag(FLAGS_temperature)) s->set_temperature(static_cast<float>(*t));
  if (const std::optional<int> k = absl::GetFlag(FLAGS_top_k)) s->set_top_k(static_cast<uint32_t>(std::max(0, *k)));
  if (const std::optional<double> p = absl::GetFlag(FLAGS_top_p)) s->set_top_p(static_cast<float>(*p));
  if (absl::GetFlag(FLAGS_seed) >= 0) s->set_seed(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) req.mutable_stopping()->add_stop(stop);
  req.mutable_stopping()->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  req.set_adapter_id(absl::GetFlag(FLAGS_adapter));
  const absl::Duration deadline = Deadline(absl::Minutes(10));
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

int Tokenize(TesseraClient& client) {
  absl::StatusOr<std::vector<int32_t>> ids =
      client.Tokenize(absl::GetFlag(FLAGS_prompt), absl::GetFlag(FLAGS_add_special_tokens), Deadline(absl::Seconds(30)));
  if (!ids.ok()) return Error(ids.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << nlohmann::json({{"ids", *ids}}).dump() << std::endl;
  } else {
    std::cout << absl::StrJoin(*ids, " ") << std::endl;
  }
  return 0;
}

int Detokenize(TesseraClient& client) {
  std::vector<int32_t> ids;
  for (const std::string& s : absl::GetFlag(FLAGS_ids)) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(s, &id)) {
      return Error(absl::InvalidArgumentError(absl::StrCat("--ids: '", s, "' is not a token id")));
    }
    ids.push_back(id);
  }
  absl::StatusOr<std::string> text =
      client.Detokenize(ids, absl::GetFlag(FLAGS_skip_special_tokens), Deadline(absl::Seconds(30)));
  if (!text.ok()) return Error(text.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << nlohmann::json({{"text", *text}}).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
              << std::endl;
  } else {
    std::cout << *text << std::endl;
  }
  return 0;
}

int Info(TesseraClient& client) {
  absl::StatusOr<v1::ServerInfoResponse> r = client.ServerInfo(Deadline(absl::Seconds(30)));
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
            << "sampling:       temperature " << r->generation_defaults().temperature() << ", top_k "
            << r->generation_defaults().top_k() << ", top_p " << r->generation_defaults().top_p() << " ("
            << r->generation_defaults().source() << ") for requests that leave them unset\n"
            << "chat template:  " << r->chat_template() << "\n"
            << "adapter kinds:  " << (r->adapter_kinds().empty() ? "(none)" : "");
  for (int i = 0; i < r->adapter_kinds_size(); ++i) std::cout << (i ? ", " : "") << r->adapter_kinds(i);
  std::cout << "\nadapters:       " << (r->loaded_adapters().empty() ? "(none)" : "");
  for (int i = 0; i < r->loaded_adapters_size(); ++i) std::cout << (i ? ", " : "") << r->loaded_adapters(i);
  std::cout << "\nversion:        " << r->version() << std::endl;
  return 0;
}

int AdaptersUpload(TesseraClient& client, const std::string& dir) {
  v1::UploadMetadata metadata;
  metadata.set_name(absl::GetFlag(FLAGS_name));
  metadata.set_kind(absl::GetFlag(FLAGS_kind));
  metadata.set_description(absl::GetFlag(FLAGS_description));
  metadata.set_visibility(absl::GetFlag(FLAGS_shared) ? v1::VISIBILITY_SHARED : v1::VISIBILITY_PRIVATE);
  ProgressBar bar(metadata.name());
  absl::StatusOr<v1::AdapterInfo> r = client.UploadAdapter(
      dir, metadata, [&](int64_t sent, int64_t total) { bar.Update(sent, total); },
      Deadline(absl::Minutes(30)));
  bar.Finish();
  if (!r.ok()) return Error(r.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*r) << std::endl;
  } else {
    PrintAdapter(*r, /*with_config=*/false);
  }
  return 0;
}

int AdaptersList(TesseraClient& client) {
  absl::StatusOr<v1::ListAdaptersResponse> r = client.ListAdapters(Deadline(absl::Seconds(30)));
  if (!r.ok()) return Error(r.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*r) << std::endl;
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"REFERENCE", "KIND", "RANK", "STORED", "STATE", "VISIBILITY"}};
  for (const v1::AdapterInfo& a : r->adapters()) {
    rows.push_back({a.reference(), a.kind(), RankText(a), FormatBytes(a.stored_bytes()), StateName(a.state()),
                    VisibilityName(a.visibility())});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line.append(widths[c] - row[c].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
  std::cout << std::flush;
  return 0;
}

int AdaptersInfo(TesseraClient& client, const std::string& reference) {
  absl::StatusOr<v1::AdapterInfo> r = client.GetAdapter(reference, Deadline(absl::Seconds(30)));
  if (!r.ok()) return Error(r.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*r) << std::endl;
  } else {
    PrintAdapter(*r, /*with_config=*/true);
  }
  return 0;
}

int AdaptersRemove(TesseraClient& client, const std::string& reference) {
  absl::Status st = client.DeleteAdapter(reference, Deadline(absl::Seconds(30)));
  if (!st.ok()) return Error(st);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << nlohmann::json{{"reference", reference}, {"deleted", true}}.dump() << std::endl;
  } else {
    std::cout << "deleted " << reference << std::endl;
  }
  return 0;
}

int AdaptersPrefetch(TesseraClient& client, const std::string& reference) {
  absl::StatusOr<v1::AdapterInfo> r = client.PrefetchAdapter(reference, Deadline(absl::Minutes(5)));
  if (!r.ok()) return Error(r.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*r) << std::endl;
  } else {
    std::cout << "prefetched " << r->reference() << ": " << StateName(r->state()) << ", "
              << FormatBytes(r->resident_bytes()) << " resident" << std::endl;
  }
  return 0;
}

int WatermarkRegister(TesseraClient& client, const std::string& id) {
  absl::StatusOr<v1::WatermarkCredentialFiles> files =
      TesseraClient::ReadCredentialFiles(absl::GetFlag(FLAGS_passport), absl::GetFlag(FLAGS_raw_factors));
  if (!files.ok()) return Error(files.status());
  absl::StatusOr<v1::RegisterWatermarkResponse> r =
      client.RegisterWatermark(id, *files, Deadline(absl::Minutes(5)));
  if (!r.ok()) return Error(r.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*r) << std::endl;
  } else {
    std::cout << "registered watermark credential " << r->owner() << "/" << r->credential_id() << " (rank "
              << r->rank() << ", " << r->modules() << " modules)" << std::endl;
  }
  return 0;
}

int WatermarkVerify(TesseraClient& client) {
  v1::VerifyOwnershipRequest request;
  request.set_adapter_id(absl::GetFlag(FLAGS_adapter));
  if (!absl::GetFlag(FLAGS_credential).empty()) {
    request.set_credential_id(absl::GetFlag(FLAGS_credential));
  } else {
    absl::StatusOr<v1::WatermarkCredentialFiles> files =
        TesseraClient::ReadCredentialFiles(absl::GetFlag(FLAGS_passport), absl::GetFlag(FLAGS_raw_factors));
    if (!files.ok()) return Error(files.status());
    *request.mutable_files() = *std::move(files);
  }
  absl::StatusOr<v1::VerifyOwnershipResponse> r = client.VerifyOwnership(request, Deadline(absl::Minutes(5)));
  if (!r.ok()) return Error(r.status());
  const bool owned = r->verdict() == v1::OWNERSHIP_VERDICT_OWNED;
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::ordered_json j = {{"verdict", owned ? "owned" : "not_owned"},
                                {"score", r->score()},
                                {"threshold", r->threshold()},
                                {"false_positive_rate", r->false_positive_rate()},
                                {"null",
                                 {{"trials", r->null_trials()},
                                  {"mean", r->null_mean()},
                                  {"std", r->null_std()},
                                  {"max", r->null_max()}}},
                                {"layers", nlohmann::ordered_json::array()}};
    for (const v1::WatermarkModuleStat& m : r->layers()) {
      j["layers"].push_back({{"layer", m.layer()},
                             {"module", m.module()},
                             {"pearson", m.pearson()},
                             {"sign_agreement", m.sign_agreement()},
                             {"psnr_db", m.psnr_db()},
                             {"adapted", m.adapted()}});
    }
    if (!r->note().empty()) j["note"] = r->note();
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << (owned ? "owned" : "not owned") << ": score " << absl::StrFormat("%.4f", r->score())
              << " (threshold " << r->threshold() << ", false-positive rate "
              << absl::StrFormat("%.3g", r->false_positive_rate()) << " from " << r->null_trials()
              << " null trials)" << std::endl;
    for (const v1::WatermarkModuleStat& m : r->layers()) {
      std::cout << absl::StrFormat("  layer %2u %-16s pearson %7.4f  signs %5.1f%%  PSNR %6.1f dB%s\n",
                                   m.layer(), m.module(), m.pearson(), 100 * m.sign_agreement(), m.psnr_db(),
                                   m.adapted() ? "" : "  (not adapted)");
    }
    if (!r->note().empty()) std::cout << "  note: " << r->note() << std::endl;
  }
  return 0;
}

int Run(const std::vector<std::string>& args) {
  if (args.empty()) return UsageError("no command given");
  const std::string& command = args[0];
  if (command == "help") {
    std::printf("%s\n(run 'tessera --help' for every flag)\n", kUsage);
    return 0;
  }
  // Check the whole command line before connecting, so that usage errors need no server.
  std::function<int(TesseraClient&)> action;
  if (command == "generate" || command == "info" || command == "tokenize" || command == "detokenize") {
    if (args.size() > 1) {
      return UsageError(absl::StrCat("unexpected argument '", args[1], "' after '", command,
                                     "' (flags start with --, e.g. --prompt TEXT)"));
    }
    if (command == "generate") {
      if (absl::GetFlag(FLAGS_prompt).empty()) return UsageError("generate needs --prompt TEXT");
      action = Generate;
    } else if (command == "tokenize") {
      action = Tokenize;
    } else if (command == "detokenize") {
      if (absl::GetFlag(FLAGS_ids).empty()) return UsageError("detokenize needs --ids 1,2,3");
      action = Detokenize;
    } else {
      action = Info;
    }
  } else if (command == "adapters") {
    if (args.size() < 2) return UsageError("adapters needs a subcommand: upload, list, info, rm or prefetch");
    const std::string& sub = args[1];
    const std::vector<std::string> operands(args.begin() + 2, args.end());
    if (sub == "list") {
      if (!operands.empty()) {
        return UsageError(absl::StrCat("unexpected argument '", operands[0], "' after 'adapters list'"));
      }
      action = AdaptersList;
    } else if (sub == "upload" || sub == "info" || sub == "rm" || sub == "prefetch") {
      const char* operand = sub == "upload" ? "DIR" : "REF";
      if (operands.size() != 1 || operands[0].empty()) {
        return UsageError(absl::StrCat("adapters ", sub, " takes exactly one ", operand, ", got ",
                                       operands.size(), " arguments"));
      }
      const std::string arg = operands[0];
      if (sub == "upload") {
        if (absl::GetFlag(FLAGS_name).empty()) return UsageError("adapters upload needs --name NAME");
        action = [arg](TesseraClient& c) { return AdaptersUpload(c, arg); };
      } else if (sub == "info") {
        action = [arg](TesseraClient& c) { return AdaptersInfo(c, arg); };
      } else if (sub == "rm") {
        action = [arg](TesseraClient& c) { return AdaptersRemove(c, arg); };
      } else {
        action = [arg](TesseraClient& c) { return AdaptersPrefetch(c, arg); };
      }
    } else {
      return UsageError(absl::StrCat("unknown adapters subcommand '", sub,
                                     "' (expected upload, list, info, rm or prefetch)"));
    }
  } else if (command == "watermark") {
    if (args.size() < 2) return UsageError("watermark needs a subcommand: register or verify");
    const std::string& sub = args[1];
    const bool files = !absl::GetFlag(FLAGS_passport).empty() && !absl::GetFlag(FLAGS_raw_factors).empty();
    if (sub == "register") {
      if (args.size() != 3) return UsageError("watermark register takes exactly one credential ID");
      if (!files) return UsageError("watermark register needs --passport FILE and --raw-factors FILE");
      const std::string id = args[2];
      action = [id](TesseraClient& c) { return WatermarkRegister(c, id); };
    } else if (sub == "verify") {
      if (args.size() != 2)
        return UsageError(absl::StrCat("unexpected argument '", args[2], "' after 'watermark verify'"));
      if (absl::GetFlag(FLAGS_adapter).empty()) return UsageError("watermark verify needs --adapter REF");
      if (absl::GetFlag(FLAGS_credential).empty() == !files) {
        return UsageError(
            "watermark verify needs either --credential ID or --passport FILE --raw-factors FILE");
      }
      action = WatermarkVerify;
    } else {
      return UsageError(
          absl::StrCat("unknown watermark subcommand '", sub, "' (expected register or verify)"));
    }
  } else {
    return UsageError(
        absl::StrCat("unknown command '", command, "' (expected generate, info, adapters or watermark)"));
  }

  TlsOptions tls;
  tls.enabled = absl::GetFlag(FLAGS_tls) || !absl::GetFlag(FLAGS_ca).empty();
  tls.ca_file = absl::GetFlag(FLAGS_ca);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  absl::StatusOr<std::unique_ptr<TesseraClient>> client = TesseraClient::Connect(
      absl::GetFlag(FLAGS_server), absl::Seconds(absl::GetFlag(FLAGS_connect_timeout)), ApiKey(), tls);
  if (!client.ok()) return Error(client.status());
  return action(**client);
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  if (tessera::PrintCommandHelp(argc, argv)) return 0;
  if (const std::string flag = tessera::FindUnknownFlag(argc, argv); !flag.empty()) {
    return tessera::UsageError(absl::StrCat("unknown flag ", flag));
  }
  const std::vector<std::string> rest = tessera::ParseFlags(argc, argv, tessera::kUsage);
  return tessera::Run(std::vector<std::string>(rest.begin() + 1, rest.end()));
}
