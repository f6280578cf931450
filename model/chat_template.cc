#include "model/chat_template.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json_util.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

// A special token in tokenizer_config.json: "text", {"content": "text"} or null.
std::string TokenText(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return "";
  const nlohmann::json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromSource(absl::string_view source, std::string bos_token,
                                                      std::string eos_token) {
  absl::StatusOr<jinja::Template> t = jinja::Template::Parse(source);
  if (!t.ok()) return t.status();
  return ChatTemplate(*std::move(t), std::move(bos_token), std::move(eos_token));
}

absl::StatusOr<std::optional<ChatTemplate>> ChatTemplate::FromDir(const std::string& dir) {
  nlohmann::json config;
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  if (fs::exists(config_path)) {
    absl::StatusOr<nlohmann::json> parsed = ReadJsonFile(config_path);
    if (!parsed.ok()) return parsed.status();
    config = *std::move(parsed);
  }
  std::string source, where;
  const std::string jinja_path = (fs::path(dir) / "chat_template.jinja").string();
  if (fs::exists(jinja_path)) {
    absl::StatusOr<std::string> text = ReadWholeFile(jinja_path);
    if (!text.ok()) return text.status();
    source = *std::move(text);
    where = jinja_path;
  } else if (config.is_object() && config.contains("chat_template") && !config["chat_template"].is_null()) {
    const nlohmann::json& t = config["chat_template"];
    where = absl::StrCat(config_path, " (chat_template)");
    if (t.is_string()) {
      source = t.get<std::string>();
    } else if (t.is_array()) {
      for (const nlohmann::json& named : t) {
        if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
            named["template"].is_string()) {
          source = named["template"].get<std::string>();
        }
      }
      if (source.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": a list of named templates without one named \"default\""));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": must be a string or a list of {name, template}"));
    }
  } else {
    return std::optional<ChatTemplate>();
  }
  absl::StatusOr<ChatTemplate> t = FromSource(source, TokenText(config, "bos_token"), TokenText(config, "eos_token"));
  if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", t.status().message()));
  return std::optional<ChatTemplate>(*std::move(t));
}

absl::StatusOr<std::string> ChatTemplate::Render(absl::Span<const ChatMessage> messages,
                                                 bool add_generation_prompt) const {
  nlohmann::ordered_json context;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  context["messages"] = std::move(list);
  context["add_generation_prompt"] = add_generation_prompt;
  return RenderContext(std::move(context));
}

absl::StatusOr<std::string> ChatTemplate::RenderContext(nlohmann::ordered_json context) const {
  if (!context.contains("bos_token")) context["bos_token"] = bos_;
  if (!context.contains("eos_token")) context["eos_token"] = eos_;
  absl::StatusOr<std::string> out = template_.Render(context);
  if (!out.ok() && absl::StartsWith(out.status().message(), jinja::kRaisedPrefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model's chat template refused these messages: ",
                     out.status().message().substr(jinja::kRaisedPrefix.size())));
  }
  return out;
}

}  // namespace tessera
