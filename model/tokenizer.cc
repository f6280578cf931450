#include "model/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <queue>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "common/exception_guard.h"
#include "common/json_util.h"
#include "nlohmann/json.hpp"
#include "model/utf8.h"

namespace tessera {
namespace {

using nlohmann::json;

// GPT-2's reversible byte <-> printable code point map.
struct ByteMap {
  std::array<char32_t, 256> byte_to_cp;
  std::unordered_map<char32_t, uint8_t> cp_to_byte;
  std::array<std::string, 256> byte_to_utf8;

  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      byte_to_cp[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      cp_to_byte[byte_to_cp[b]] = static_cast<uint8_t>(b);
      AppendUtf8(byte_to_cp[b], &byte_to_utf8[b]);
    }
  }
};

const ByteMap& Bytes() {
  static const ByteMap* map = new ByteMap();
  return *map;
}

constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// Decodes one UTF-8 code point at s[*i] (input known valid).
char32_t NextCodePoint(std::string_view s, size_t* i) {
  const uint8_t b = static_cast<uint8_t>(s[*i]);
  int len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  char32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[*i + k]) & 0x3F);
  *i += len;
  return cp;
}

std::string MergeKey(const std::string& a, const std::string& b) {
  return absl::StrCat(a, "\xFF", b);  // 0xFF never occurs in UTF-8
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Rust's char::is_whitespace (Unicode White_Space).
bool IsWhiteSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// The Rust regex crate's Unicode \w, which HF's Whitespace pre-tokenizer and
// single_word added tokens use (UTS #18 word characters). PCRE2's own \w
// leaves out marks, Join_Control and the Other_Alphabetic symbols.
constexpr char kRustWordClass[] = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}";

bool IsWordChar(char32_t c) {
  static pcre2_code* const word = [] {
    const std::string pattern = absl::StrCat("^[", kRustWordClass, "]");
    int err;
    PCRE2_SIZE off;
    return pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                         &off, nullptr);
  }();
  std::string utf8;
  AppendUtf8(c, &utf8);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(word, nullptr);
  const int rc = pcre2_match(word, reinterpret_cast<PCRE2_SPTR>(utf8.data()), utf8.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  return rc > 0;
}

// The code point that ends at `end` (text[..end] is valid UTF-8).
char32_t CodePointBefore(std::string_view text, size_t end, size_t* begin) {
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
  size_t probe = b;
  const char32_t c = NextCodePoint(text, &probe);
  *begin = b;
  return c;
}


}  // namespace

// One pre-tokenizer stage: a regex split, then optionally the byte mapping.
struct Tokenizer::PreTokenizerStep {
  // Split behaviours are HF's: what becomes of each match of the pattern.
  enum class Kind {
    kSplitIsolated, kSplitRemoved, kSplitMergedWithPrevious, kSplitMergedWithNext, kSplitContiguous, kByteLevel,
    kMetaspace,
    kSplitKeepMatches  // invert: the matches stay, the text between them goes
  };
  enum class Prepend { kAlways, kFirst, kNever };
  // HF's SplitDelimiterBehavior names; nullopt for an unknown one.
  static std::optional<Kind> SplitKindOf(std::string_view behavior) {
    if (behavior == "Isolated") return Kind::kSplitIsolated;
    if (behavior == "Removed") return Kind::kSplitRemoved;
    if (behavior == "MergedWithPrevious") return Kind::kSplitMergedWithPrevious;
    if (behavior == "MergedWithNext") return Kind::kSplitMergedWithNext;
    if (behavior == "Contiguous") return Kind::kSplitContiguous;
    return std::nullopt;
  }
  Kind kind;
  pcre2_code* regex = nullptr;  // null for ByteLevel without regex
  bool add_prefix_space = false;
  // Metaspace: spaces become `replacement`, which is prepended per `prepend`
  // (kFirst: only where the input starts); with `split`, each piece is cut
  // before every replacement (HF's MergedWithNext).
  std::string replacement;
  Prepend prepend = Prepend::kAlways;
  bool split = true;
  bool invert = false;  // Split: the pattern's matches and the text between them swap roles

  ~PreTokenizerStep() {
    if (regex) pcre2_code_free(regex);
  }

  // Splits each piece of *pieces in place; at_input_start: the first piece
  // begins the input (not after an added token).
  absl::Status Apply(std::vector<std::string>* pieces, bool at_input_start) const {
    if (kind == Kind::kMetaspace) {
      ApplyMetaspace(pieces, at_input_start);
      return absl::OkStatus();
    }
    std::vector<std::string> out;
    for (std::string& piece : *pieces) {
      if (kind == Kind::kByteLevel && add_prefix_space && !piece.empty() && piece[0] != ' ') {
        piece.insert(piece.begin(), ' ');
      }
      if (!regex) {
        out.push_back(std::move(piece));
        continue;
      }
      // (begin, end, is_match) spans covering the piece, as HF's find_matches.
      struct Span {
        size_t b, e;
        bool match;
      };
      std::vector<Span> spans;
      pcre2_match_data* md = pcre2_match_data_create_from_pattern(regex, nullptr);
      size_t start = 0, last = 0;
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      while (start <= piece.size()) {
        const int rc = pcre2_match(regex, subject, piece.size(), start, 0, md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
          pcre2_match_data_free(md);
          PCRE2_UCHAR msg[256];
          pcre2_get_error_message(rc, msg, sizeof(msg));
          return absl::InvalidArgumentError(
              absl::StrCat("pre-tokenizer regex failed on the input: ", reinterpret_cast<char*>(msg)));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t b = ov[0], e = ov[1];
        if (b > last) spans.push_back({last, b, false});
        if (e > b) spans.push_back({b, e, true});
        last = e;
        if (e == b) {  // empty match: step one code point
          if (e >= piece.size()) break;
          size_t next = e;
          NextCodePoint(piece, &next);
          start = next;
        } else {
          start = e;
        }
      }
      pcre2_match_data_free(md);
      if (last < piece.size()) spans.push_back({last, piece.size(), false});
      if (invert) {
        for (Span& s : spans) s.match = !s.match;
      }
      std::vector<Span> merged;
      bool previous_match = false;
      switch (kind) {
        case Kind::kSplitRemoved:
          for (const Span& s : spans) {
            if (!s.match) merged.push_back(s);
          }
          break;
        case Kind::kSplitKeepMatches:
          for (const Span& s : spans) {
            if (s.match) merged.push_back(s);
          }
          break;
        case Kind::kSplitMergedWithPrevious:
          for (const Span& s : spans) {
            if (s.match && !previous_match && !merged.empty()) {
              merged.back().e = s.e;
            } else {
              merged.push_back(s);
            }
            previous_match = s.match;
          }
          break;
        case Kind::kSplitMergedWithNext:
          for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
            if (it->match && !previous_match && !merged.empty()) {
              merged.back().b = it->b;
            } else {
              merged.push_back(*it);
            }
            previous_match = it->match;
          }
          std::reverse(merged.begin(), merged.end());
          break;
        case Kind::kSplitContiguous:
          for (size_t k = 0; k < spans.size(); ++k) {
            if (k > 0 && spans[k].match == previous_match) {
              merged.back().e = spans[k].e;
            } else {
              merged.push_back(spans[k]);
            }
            previous_match = spans[k].match;
          }
          break;
        default:
          merged = std::move(spans);
      }
      for (const Span& s : merged) out.push_back(piece.substr(s.b, s.e - s.b));
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

  void ApplyMetaspace(std::vector<std::string>* pieces, bool at_input_start) const {
    std::vector<std::string> out;
    for (size_t k = 0; k < pieces->size(); ++k) {
      std::string p = absl::StrReplaceAll((*pieces)[k], {{" ", replacement}});
      const bool first = k == 0 && at_input_start;
      if (!p.starts_with(replacement) &&
          (prepend == Prepend::kAlways || (prepend == Prepend::kFirst && first))) {
        p.insert(0, replacement);
      }
      if (!split) {
        out.push_back(std::move(p));
        continue;
      }
      size_t begin = 0;
      while (begin < p.size()) {
        size_t next = p.find(replacement, begin + (p.compare(begin, replacement.size(), replacement) == 0
                                                       ? replacement.size()
                                                       : 0));
        if (next == std::string::npos) next = p.size();
        out.push_back(p.substr(begin, next - begin));
        begin = next;
      }
    }
    *pieces = std::move(out);
  }
};

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromDir(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open (Tessera needs an HF fast tokenizer: tokenizer.json)"));
  }
  std::string config_text;
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  if (fs::exists(config_path)) {
    absl::StatusOr<std::string> c = ReadFile(config_path);
    if (!c.ok()) return c.status();
    config_text = *std::move(c);
  }
  return FromJson(*text, config_text, path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                               std::string_view config_json,
                                                               const std::string& source) {
  return GuardExceptions(source, [&] { return Parse(tokenizer_json, config_json, source); });
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Parse(std::string_view tokenizer_json,
                                                            std::string_view config_json, const std::string& source) {
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  json j, cfg;
  {
    absl::StatusOr<json> parsed = ParseJson(tokenizer_json, "tokenizer.json", kMaxModelJsonBytes);
    if (!parsed.ok()) return fail(std::string(parsed.status().message()));
    j = *std::move(parsed);
    if (!config_json.empty()) {
      parsed = ParseJson(config_json, "tokenizer_config.json", kMaxModelJsonBytes);
      if (!parsed.ok()) return fail(std::string(parsed.status().message()));
      cfg = *std::move(parsed);
    }
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  try {
    const json& model = j.at("model");
    const std::string type = model.value("type", "BPE");
    if (type != "BPE") return fail(absl::StrCat("tokenizer model '", type, "' is not supported (only BPE)"));
    // Normalizers: the SentencePiece family's Prepend and Replace.
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      const json& n = j["normalizer"];
      std::vector<const json*> norms;
      const bool sequence = n.value("type", "") == "Sequence";
      if (sequence) {
        for (const json& x : n.at("normalizers")) norms.push_back(&x);
      } else {
        norms.push_back(&n);
      }
      for (size_t k = 0; k < norms.size(); ++k) {
        const json& x = *norms[k];
        const std::string nt = x.value("type", "?");
        const std::string where = sequence ? absl::StrCat("normalizer.normalizers[", k, "]") : "normalizer";
        using K = NormalizeOp::Kind;
        if (nt == "Prepend") {
          t->normalize_.push_back({K::kPrepend, "", x.at("prepend").get<std::string>()});
        } else if (nt == "NFC" || nt == "NFD" || nt == "NFKC" || nt == "NFKD") {
          t->normalize_.push_back({nt == "NFC" ? K::kNfc : nt == "NFD" ? K::kNfd : nt == "NFKC" ? K::kNfkc : K::kNfkd});
        } else if (nt == "Lowercase") {
          t->normalize_.push_back({K::kLowercase});
        } else if (nt == "Strip") {
          NormalizeOp op{K::kStrip};
          op.left = x.value("strip_left", true);
          op.right = x.value("strip_right", true);
          t->normalize_.push_back(op);
        } else if (nt == "Replace") {
          const json& p = x.at("pattern");
          if (!p.contains("String")) {
            return fail(absl::StrCat(where, ": Replace with a Regex pattern is not supported (String only)"));
          }
          const std::string pattern = p["String"].get<std::string>();
          if (pattern.empty()) return fail(absl::StrCat(where, ": Replace with an empty pattern"));
          t->normalize_.push_back({K::kReplace, pattern, x.at("content").get<std::string>()});
        } else {
          return fail(absl::StrCat(where, ": normalizer '", Excerpt(nt, 32),
                                   "' is not supported yet (supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, "
                                   "Prepend, Replace, Sequence)"));
        }
      }
    }
    t->byte_fallback_ = model.value("byte_fallback", false);
    t->fuse_unk_ = model.value("fuse_unk", false);
    t->ignore_merges_ = model.value("ignore_merges", false);
    for (auto& [token, id] : model.at("vocab").items()) {
      absl::StatusOr<int64_t> checked = JsonInt(id, "vocab id", 0, (1 << 24) - 1);
      if (!checked.ok()) {
        return fail(absl::StrCat("vocabulary entry '", Excerpt(token), "': ", checked.status().message()));
      }
      const int32_t i = static_cast<int32_t>(*checked);
      t->vocab_.emplace(token, i);
      if (static_cast<size_t>(i) >= t->id_to_token_.size()) t->id_to_token_.resize(i + 1);
      t->id_to_token_[i] = token;
      t->vocab_size_ = std::max(t->vocab_size_, i + 1);
    }
    if (model.contains("continuing_subword_prefix") && model["continuing_subword_prefix"].is_string()) {
      t->subword_prefix_ = model["continuing_subword_prefix"].get<std::string>();
    }
    if (model.contains("end_of_word_suffix") && model["end_of_word_suffix"].is_string()) {
      t->word_suffix_ = model["end_of_word_suffix"].get<std::string>();
    }
    int32_t rank = 0;
    for (const json& m : model.at("merges")) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos) return fail(absl::StrCat("merge '", s, "' has no space"));
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        return fail("a merge is neither \"a b\" nor [a, b]");
      }
      // HF forms the merged token as a + b less b's first prefix-length
      // bytes; it refuses a file whose b is shorter.
      if (b.size() < t->subword_prefix_.size()) {
        return fail(absl::StrCat("model.merges: '", Excerpt(b, 32), "' is shorter than continuing_subword_prefix"));
      }
      t->merge_ranks_.emplace(MergeKey(a, b), rank++);
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = t->vocab_.find(model["unk_token"].get<std::string>());
      if (it != t->vocab_.end()) t->unk_id_ = it->second;
    }
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (size_t k = 0; k < j["added_tokens"].size(); ++k) {
        const json& a = j["added_tokens"][k];
        absl::StatusOr<int64_t> added_id = JsonInt(a.at("id"), "added token id", 0, (1 << 24) - 1);
        if (!added_id.ok()) return fail(std::string(added_id.status().message()));
        AddedToken tok{static_cast<int32_t>(*added_id), a.at("content").get<std::string>(),
                       a.value("special", false)};
        tok.lstrip = a.value("lstrip", false);
        tok.rstrip = a.value("rstrip", false);
        tok.single_word = a.value("single_word", false);
        tok.normalized = a.value("normalized", false);
        // A stripping token covers any run of whitespace: no bytes-per-token bound.
        if (tok.lstrip || tok.rstrip) t->drops_text_ = true;
        if (tok.content.empty()) continue;
        t->added_by_id_[tok.id] = t->added_.size();
        t->vocab_size_ = std::max(t->vocab_size_, tok.id + 1);
        t->added_.push_back(std::move(tok));
      }
    }
    // Longest content first, so "<|end|>" wins over a shorter prefix token.
    std::vector<AddedToken> sorted = t->added_;
    std::stable_sort(sorted.begin(), sorted.end(), [](const AddedToken& x, const AddedToken& y) {
      return x.content.size() > y.content.size();
    });
    t->added_ = std::move(sorted);
    t->added_by_id_.clear();
    for (size_t i = 0; i < t->added_.size(); ++i) t->added_by_id_[t->added_[i].id] = i;

    // Pre-tokenizer pipeline.
    std::vector<const json*> steps;
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      const json& pt = j["pre_tokenizer"];
      if (pt.value("type", "") == "Sequence") {
        for (const json& s : pt.at("pretokenizers")) steps.push_back(&s);
      } else {
        steps.push_back(&pt);
      }
    }
    bool has_byte_level = false;
    bool has_metaspace = false;
    for (const json* s : steps) {
      const std::string st = s->value("type", "");
      auto step = std::make_unique<PreTokenizerStep>();
      std::string pattern;
      if (st == "Metaspace") {
        step->kind = PreTokenizerStep::Kind::kMetaspace;
        step->replacement = s->value("replacement", "\u2581");
        if (step->replacement.empty()) return fail("pre_tokenizer: Metaspace replacement is empty");
        step->split = s->value("split", true);
        const std::string scheme =
            s->contains("prepend_scheme") ? s->value("prepend_scheme", "always")
                                          : (s->value("add_prefix_space", true) ? "always" : "never");
        if (scheme == "always") {
          step->prepend = PreTokenizerStep::Prepend::kAlways;
        } else if (scheme == "first") {
          step->prepend = PreTokenizerStep::Prepend::kFirst;
        } else if (scheme == "never") {
          step->prepend = PreTokenizerStep::Prepend::kNever;
        } else {
          return fail(absl::StrCat("pre_tokenizer: Metaspace prepend_scheme '", Excerpt(scheme, 32),
                                   "' is not one of always, first, never"));
        }
        has_metaspace = true;
      } else if (st == "Whitespace" || st == "WhitespaceSplit" || st == "Digits" || st == "Punctuation") {
        // HF's fixed splits, as regexes: Whitespace keeps the runs of word
        // characters and of other non-space characters; WhitespaceSplit drops
        // whitespace runs; Digits isolates digits (or runs of them);
        // Punctuation applies its behaviour to each punctuation character.
        if (st == "Whitespace") {
          step->kind = PreTokenizerStep::Kind::kSplitKeepMatches;
          pattern = absl::StrCat("[", kRustWordClass, "]+|[^", kRustWordClass, "\\s]+");
          t->drops_text_ = true;
        } else if (st == "WhitespaceSplit") {
          step->kind = PreTokenizerStep::Kind::kSplitRemoved;
          pattern = "\\s+";
          t->drops_text_ = true;
        } else if (st == "Digits") {
          step->kind = PreTokenizerStep::Kind::kSplitIsolated;
          pattern = s->value("individual_digits", false) ? "\\p{N}" : "\\p{N}+";
        } else {
          const std::string behavior = s->value("behavior", "Isolated");
          const std::optional<PreTokenizerStep::Kind> kind = PreTokenizerStep::SplitKindOf(behavior);
          if (!kind) return fail(absl::StrCat("Punctuation behavior '", Excerpt(behavior, 32), "' is not supported"));
          step->kind = *kind;
          if (*kind == PreTokenizerStep::Kind::kSplitRemoved) t->drops_text_ = true;
          // Rust's is_ascii_punctuation or Unicode punctuation (P*), one per match.
          pattern = "[\\p{P}$+<=>^`|~]";
        }
      } else if (st == "ByteLevel") {
        step->kind = PreTokenizerStep::Kind::kByteLevel;
        step->add_prefix_space = s->value("add_prefix_space", false);
        if (s->value("use_regex", true)) pattern = kGpt2Pattern;
        has_byte_level = true;
      } else if (st == "Split") {
        const std::string behavior = s->value("behavior", "Isolated");
        step->invert = s->value("invert", false);
        if (step->invert && behavior == "Removed") t->drops_text_ = true;
        const std::optional<PreTokenizerStep::Kind> kind = PreTokenizerStep::SplitKindOf(behavior);
        if (!kind) {
          return fail(absl::StrCat("Split behavior '", Excerpt(behavior, 32),
                                   "' is not supported (Isolated, Removed, MergedWithPrevious, MergedWithNext, "
                                   "Contiguous)"));
        }
        step->kind = *kind;
        if (*kind == PreTokenizerStep::Kind::kSplitRemoved) t->drops_text_ = true;
        const json& p = s->at("pattern");
        if (p.contains("Regex")) {
          pattern = p["Regex"].get<std::string>();
        } else if (p.contains("String")) {
          // Quote the literal for PCRE2.
          pattern = absl::StrCat("\\Q", p["String"].get<std::string>(), "\\E");
        } else {
          return fail("Split pattern must be Regex or String");
        }
      } else {
        return fail(absl::StrCat("pre-tokenizer '", Excerpt(st, 32),
                                 "' is not supported (ByteLevel, Metaspace, Split, Sequence)"));
      }
      if (!pattern.empty()) {
        int err;
        PCRE2_SIZE off;
        step->regex = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                    PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
        if (!step->regex) {
          PCRE2_UCHAR msg[256];
          pcre2_get_error_message(err, msg, sizeof(msg));
          return fail(absl::StrCat("pre-tokenizer regex does not compile at offset ", off, ": ",
                                   reinterpret_cast<char*>(msg)));
        }
        pcre2_jit_compile(step->regex, PCRE2_JIT_COMPLETE);  // best effort
      }
      t->pre_steps_.push_back(std::move(step));
    }
    t->byte_level_ = has_byte_level;
    const bool sentencepiece_normalizer =
        std::any_of(t->normalize_.begin(), t->normalize_.end(), [](const NormalizeOp& op) {
          return op.kind == NormalizeOp::Kind::kPrepend || op.kind == NormalizeOp::Kind::kReplace;
        });
    if (has_byte_level && sentencepiece_normalizer) {
      return fail("normalizer: Prepend/Replace with a ByteLevel pre-tokenizer is not supported");
    }
    if (has_byte_level && has_metaspace) return fail("pre_tokenizer: ByteLevel and Metaspace together");
    const std::string decoder_type =
        j.contains("decoder") && j["decoder"].is_object() ? j["decoder"].value("type", "") : "";
    const bool subword_decoder = decoder_type == "WordPiece" || decoder_type == "BPEDecoder";
    if (!has_byte_level && !has_metaspace && !sentencepiece_normalizer && !subword_decoder) {
      return fail(
          "neither byte-level BPE (a ByteLevel pre-tokenizer), SentencePiece-style BPE (Prepend/Replace "
          "normalizers or a Metaspace pre-tokenizer), nor BPE with a WordPiece or BPEDecoder decoder; this "
          "pipeline is not supported yet");
    }
    // Decoders.
    if (!j.contains("decoder") || j["decoder"].is_null()) return fail("decoder: missing");
    {
      const json& d = j["decoder"];
      if (has_byte_level) {
        if (d.value("type", "") != "ByteLevel") return fail("decoder: byte-level BPE needs the ByteLevel decoder");
      } else {
        std::vector<const json*> decs;
        const bool sequence = d.value("type", "") == "Sequence";
        if (sequence) {
          for (const json& x : d.at("decoders")) decs.push_back(&x);
        } else {
          decs.push_back(&d);
        }
        for (size_t k = 0; k < decs.size(); ++k) {
          const json& x = *decs[k];
          const std::string dt = x.value("type", "?");
          const std::string where = sequence ? absl::StrCat("decoder.decoders[", k, "]") : "decoder";
          if (dt == "Replace") {
            const json& p = x.at("pattern");
            if (!p.contains("String")) return fail(absl::StrCat(where, ": Replace needs a String pattern"));
            t->decode_replace_.push_back({p["String"].get<std::string>(), x.at("content").get<std::string>()});
          } else if (dt == "Metaspace") {
            // Its replacement back to spaces; the first token's leading one
            // goes unless prepend_scheme is never (HF drops the first token's
            // replacements; a leading one is what they are in practice).
            const std::string rep = x.value("replacement", "\u2581");
            if (rep.empty()) return fail(absl::StrCat(where, ": Metaspace replacement is empty"));
            t->decode_replace_.push_back({rep, " "});
            const std::string scheme =
                x.contains("prepend_scheme") ? x.value("prepend_scheme", "always")
                                             : (x.value("add_prefix_space", true) ? "always" : "never");
            if (scheme != "never") t->metaspace_first_drop_ = rep;
          } else if (dt == "WordPiece" || dt == "BPEDecoder") {
            if (decs.size() != 1) {
              return fail(absl::StrCat(where, ": '", dt, "' is supported only as the whole decoder"));
            }
            if (dt == "WordPiece") {
              t->wordpiece_prefix_ = x.value("prefix", "##");
              t->wordpiece_cleanup_ = x.value("cleanup", true);
            } else {
              t->bpe_decoder_suffix_ = x.value("suffix", "</w>");
              if (t->bpe_decoder_suffix_.empty()) return fail(absl::StrCat(where, ": BPEDecoder suffix is empty"));
            }
          } else if (dt == "ByteFallback") {
            t->decode_byte_fallback_ = true;
          } else if (dt == "Fuse") {
            // Concatenation: what decoding does anyway.
          } else if (dt == "Strip") {
            absl::StatusOr<int64_t> start = JsonIntField(x, "start", 0, 0, 1);
            absl::StatusOr<int64_t> stop = JsonIntField(x, "stop", 0, 0, 0);
            if (x.value("content", "") != " " || !start.ok() || !stop.ok()) {
              return fail(absl::StrCat(where, ": only Strip of at most one leading space is supported"));
            }
            t->strip_leading_ = static_cast<int>(*start);
          } else {
            return fail(absl::StrCat(where, ": decoder '", Excerpt(dt, 32),
                                     "' is not supported yet (Replace, ByteFallback, Fuse, Strip, Metaspace, "
                                     "WordPiece, BPEDecoder, Sequence)"));
          }
        }
      }
    }

    // Special tokens from tokenizer_config.json, falling back to the
    // post-processor template for BOS.
    auto token_id = [&](const json& v) -> std::optional<int32_t> {
      std::string s;
      if (v.is_string())
        s = v.get<std::string>();
      else if (v.is_object() && v.contains("content"))
        s = v["content"].get<std::string>();
      else
        return std::nullopt;
      return t->TokenToId(s);
    };
    if (cfg.is_object()) {
      if (cfg.contains("bos_token")) t->bos_id_ = token_id(cfg["bos_token"]);
      if (cfg.contains("eos_token")) t->eos_id_ = token_id(cfg["eos_token"]);
    }
    // What encoding with special tokens adds: the post-processor's single
    // template (TemplateProcessing, alone or in a Sequence; ByteLevel adds
    // nothing) ...
    if (j.contains("post_processor") && !j["post_processor"].is_null()) {
      const json& pp = j["post_processor"];
      std::vector<std::pair<const json*, std::string>> procs;
      if (pp.value("type", "") == "Sequence") {
        const json& list = pp.at("processors");
        for (size_t k = 0; k < list.size(); ++k) procs.push_back({&list[k], absl::StrCat("post_processor.processors[", k, "]")});
      } else {
        procs.push_back({&pp, "post_processor"});
      }
      for (const auto& [proc, where] : procs) {
        const std::string type = proc->value("type", "?");
        if (type == "ByteLevel") continue;
        if (type != "TemplateProcessing") {
          return fail(absl::StrCat(where, ": '", Excerpt(type, 32),
                                   "' is not supported (TemplateProcessing, ByteLevel, Sequence)"));
        }
        t->prefix_ids_.clear();
        t->suffix_ids_.clear();
        bool seen_sequence = false;
        for (const json& item : proc->at("single")) {
          if (item.contains("Sequence")) {
            seen_sequence = true;
            continue;
          }
          const std::string name = item.at("SpecialToken").at("id").get<std::string>();
          std::vector<int32_t> ids;
          const json* specials = proc->contains("special_tokens") ? &(*proc)["special_tokens"] : nullptr;
          if (specials && specials->contains(name) && (*specials)[name].contains("ids")) {
            for (const json& id : (*specials)[name]["ids"]) {
              absl::StatusOr<int64_t> v = JsonInt(id, "special token id", 0, t->vocab_size_ - 1);
              if (!v.ok()) return fail(absl::StrCat(where, ": ", v.status().message()));
              ids.push_back(static_cast<int32_t>(*v));
            }
          } else if (std::optional<int32_t> id = t->TokenToId(name)) {
            ids.push_back(*id);
          } else {
            return fail(absl::StrCat(where, ": special token '", Excerpt(name, 64), "' is not in the vocabulary"));
          }
          std::vector<int32_t>& into = seen_sequence ? t->suffix_ids_ : t->prefix_ids_;
          into.insert(into.end(), ids.begin(), ids.end());
        }
      }
    }
    // ... except for the tokenizer classes whose transformers implementation
    // rebuilds it from add_bos_token / add_eos_token (LlamaTokenizerFast,
    // GemmaTokenizerFast, CodeLlamaTokenizerFast).
    const std::string cls = cfg.is_object() ? cfg.value("tokenizer_class", "") : "";
    const bool rebuilds = cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast" || cls == "GemmaTokenizer" ||
                          cls == "GemmaTokenizerFast" || cls == "CodeLlamaTokenizer" ||
                          cls == "CodeLlamaTokenizerFast";
    if (rebuilds && (cfg.contains("add_bos_token") || cfg.contains("add_eos_token"))) {
      const bool add_bos = cfg.value("add_bos_token", true);
      const bool add_eos = cfg.value("add_eos_token", false);
      if (add_bos && !t->bos_id_) return fail("add_bos_token is true but bos_token is unknown");
      if (add_eos && !t->eos_id_) return fail("add_eos_token is true but eos_token is unknown");
      t->prefix_ids_.clear();
      t->suffix_ids_.clear();
      if (add_bos) t->prefix_ids_.push_back(*t->bos_id_);
      if (add_eos) t->suffix_ids_.push_back(*t->eos_id_);
    }
    if (!t->bos_id_ && t->prefix_ids_.size() == 1) t->bos_id_ = t->prefix_ids_[0];
    t->add_bos_ = t->bos_id_ && !t->prefix_ids_.empty() && t->prefix_ids_[0] == *t->bos_id_;
  } catch (const json::exception& e) {
    return fail(absl::StrCat("unexpected structure: ", e.what()));
  }
  for (AddedToken& a : t->added_) {
    if (a.content.empty()) return fail("an added token has empty content");
    a.match = a.content;
    if (a.normalized) {
      absl::StatusOr<std::string> n = t->Normalize(a.content);
      if (!n.ok()) return fail(std::string(n.status().message()));
      a.match = *std::move(n);
      if (a.match.empty()) return fail(absl::StrCat("added token '", Excerpt(a.content, 32), "' normalizes to nothing"));
    }
    t->added_first_byte_[a.normalized][static_cast<unsigned char>(a.match[0])] = true;
  }
  // Longest match first (leftmost-longest).
  std::stable_sort(t->added_.begin(), t->added_.end(),
                   [](const AddedToken& x, const AddedToken& y) { return x.match.size() > y.match.size(); });
  t->added_by_id_.clear();
  for (size_t i = 0; i < t->added_.size(); ++i) t->added_by_id_[t->added_[i].id] = i;
  for (const auto& [token, id] : t->vocab_) {
    t->max_token_bytes_ = std::max(t->max_token_bytes_, token.size());
  }
  for (const AddedToken& a : t->added_) t->max_token_bytes_ = std::max(t->max_token_bytes_, a.content.size());
  return t;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  for (const AddedToken& a : added_) {
    if (a.content == token) return a.id;
  }
  auto it = vocab_.find(std::string(token));
  if (it != vocab_.end()) return it->second;
  return std::nullopt;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  auto it = added_by_id_.find(id);
  return it != added_by_id_.end() && added_[it->second].special;
}


absl::Status Tokenizer::SplitOnAdded(std::string_view text, bool normalized,
                                     const std::function<absl::Status(std::string_view, size_t)>& on_text,
                                     std::vector<int32_t>* ids) const {
  size_t seg_start = 0, i = 0;
  while (i < text.size()) {
    if (!added_first_byte_[normalized][static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    const AddedToken* hit = nullptr;
    for (const AddedToken& a : added_) {
      if (a.normalized == normalized && text.compare(i, a.match.size(), a.match) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + hit->match.size();
    if (hit->single_word) {
      size_t before = 0, after = e;
      const bool word_before = b > 0 && IsWordChar(CodePointBefore(text, b, &before));
      const bool word_after = e < text.size() && IsWordChar(NextCodePoint(text, &after));
      if (word_before || word_after) {  // inside a word: not this token; the search goes on after it
        i = e;
        continue;
      }
    }
    if (hit->lstrip) {
      while (b > seg_start) {
        size_t before = 0;
        if (!IsWhiteSpace(CodePointBefore(text, b, &before))) break;
        b = before;
      }
    }
    if (hit->rstrip) {
      while (e < text.size()) {
        size_t next = e;
        if (!IsWhiteSpace(NextCodePoint(text, &next))) break;
        e = next;
      }
    }
    if (b > seg_start) {
      if (absl::Status s = on_text(text.substr(seg_start, b - seg_start), seg_start); !s.ok()) return s;
    }
    ids->push_back(hit->id);
    i = seg_start = e;
  }
  if (seg_start < text.size()) return on_text(text.substr(seg_start), seg_start);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_special) const {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("prompt text is not valid UTF-8");
  std::vector<int32_t> ids;
  if (add_special) ids = prefix_ids_;
  // Added tokens matched in the raw text first; the rest is normalized and
  // split on the normalized ones (HF's two passes).
  TESSERA_RETURN_IF_ERROR(SplitOnAdded(
      text, /*normalized=*/false,
      [&](std::string_view piece, size_t offset) { return EncodeSegment(piece, offset == 0, &ids); }, &ids));
  if (add_special) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

absl::Status Tokenizer::EncodeSegment(std::string_view text, bool at_input_start,
                                      std::vector<int32_t>* ids) const {
  if (text.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> normalized = Normalize(text);
  if (!normalized.ok()) return normalized.status();
  return SplitOnAdded(
      *normalized, /*normalized=*/true,
      [&](std::string_view piece, size_t offset) -> absl::Status {
        std::vector<std::string> pieces;
        TESSERA_RETURN_IF_ERROR(PreTokenize(piece, at_input_start && offset == 0, &pieces));
        for (const std::string& p : pieces) TESSERA_RETURN_IF_ERROR(Bpe(p, ids));
        return absl::OkStatus();
      },
      ids);
}

absl::StatusOr<std::string> Tokenizer::Normalize(std::string_view text) const {
  std::string s(text);
  for (const NormalizeOp& op : normalize_) {
    using K = NormalizeOp::Kind;
    switch (op.kind) {
      case K::kPrepend:
        if (!s.empty()) s.insert(0, op.content);
        break;
      case K::kReplace:
        s = absl::StrReplaceAll(s, {{op.pattern, op.content}});
        break;
      case K::kLowercase: {
        // Rust's char::to_lowercase: the simple mapping, except U+0130 (the
        // one unconditional multi-character lowercase in SpecialCasing.txt).
        std::string out;
        for (size_t i = 0; i < s.size();) {
          const char32_t c = NextCodePoint(s, &i);
          if (c == 0x130) {
            out += "i\xCC\x87";
            continue;
          }
          AppendUtf8(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))), &out);
        }
        s = std::move(out);
        break;
      }
      case K::kStrip: {
        size_t b = 0, e = s.size();
        while (op.left && b < e) {
          size_t next = b;
          if (!IsWhiteSpace(NextCodePoint(s, &next))) break;
          b = next;
        }
        while (op.right && e > b) {
          size_t start = 0;
          if (!IsWhiteSpace(CodePointBefore(s, e, &start))) break;
          e = start;
        }
        s = s.substr(b, e - b);
        break;
      }
      default: {
        const int options = UTF8PROC_STABLE |
                            (op.kind == K::kNfc || op.kind == K::kNfkc ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
                            (op.kind == K::kNfkc || op.kind == K::kNfkd ? UTF8PROC_COMPAT : 0);
        utf8proc_uint8_t* out = nullptr;
        const utf8proc_ssize_t n =
            utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                         &out, static_cast<utf8proc_option_t>(options));
        if (n < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("tokenizer: Unicode normalization failed: ", utf8proc_errmsg(n)));
        }
        s.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
        std::free(out);
        break;
      }
    }
  }
  return s;
}

absl::Status Tokenizer::PreTokenize(std::string_view text, bool at_input_start,
                                    std::vector<std::string>* pieces) const {
  pieces->assign(1, std::string(text));
  for (const auto& step : pre_steps_) {
    if (absl::Status s = step->Apply(pieces, at_input_start); !s.ok()) return s;
  }
  if (!byte_level_) return absl::OkStatus();  // SentencePiece family: no byte mapping
  // Byte-level mapping of every piece.
  const ByteMap& bm = Bytes();
  for (std::string& p : *pieces) {
    std::string mapped;
    mapped.reserve(p.size() * 2);
    for (unsigned char c : p) mapped += bm.byte_to_utf8[c];
    p = std::move(mapped);
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Bpe(const std::string& piece, std::vector<int32_t>* ids) const {
  if (piece.empty()) return absl::OkStatus();
  auto whole = vocab_.find(piece);
  // ignore_merges (Llama-3): a piece that is a vocabulary token is that token,
  // whatever the merges would make of it; a one-character piece is its token.
  // (Otherwise a token need not be reachable by merges: Gemma's "<s>".)
  if (whole != vocab_.end() && (ignore_merges_ || (piece.size() <= 1 && word_suffix_.empty()))) {
    ids->push_back(whole->second);
    return absl::OkStatus();
  }
  // HF's merge order with a heap: the lowest-ranked adjacent pair first, the
  // leftmost among equals; O(n log n) in the piece length.
  struct Symbol {
    std::string text;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> sym;
  // Every character but the first carries continuing_subword_prefix, the
  // last one end_of_word_suffix (HF's merge_word).
  for (size_t i = 0; i < piece.size();) {
    const size_t start = i;
    NextCodePoint(piece, &i);
    const int n = static_cast<int>(sym.size());
    std::string text = start > 0 ? subword_prefix_ : std::string();
    absl::StrAppend(&text, absl::string_view(piece.data() + start, i - start));
    if (i == piece.size()) text += word_suffix_;
    sym.push_back({std::move(text), n - 1, -1, true});
    if (n > 0) sym[n - 1].next = n;
  }
  using Candidate = std::pair<int32_t, int>;  // rank, left position
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto rank_of = [&](int left) -> std::optional<int32_t> {
    const int right = sym[left].next;
    if (right < 0) return std::nullopt;
    auto it = merge_ranks_.find(MergeKey(sym[left].text, sym[right].text));
    if (it == merge_ranks_.end()) return std::nullopt;
    return it->second;
  };
  for (int k = 0; k + 1 < static_cast<int>(sym.size()); ++k) {
    if (std::optional<int32_t> r = rank_of(k)) heap.push({*r, k});
  }
  while (!heap.empty()) {
    const auto [rank, left] = heap.top();
    heap.pop();
    if (!sym[left].alive) continue;
    const std::optional<int32_t> current = rank_of(left);
    if (!current || *current != rank) continue;  // stale: a neighbour merged since
    const int right = sym[left].next;
    sym[left].text.append(sym[right].text, subword_prefix_.size());
    sym[right].alive = false;
    sym[left].next = sym[right].next;
    if (sym[left].next >= 0) sym[sym[left].next].prev = left;
    if (sym[left].prev >= 0) {
      if (std::optional<int32_t> r = rank_of(sym[left].prev)) heap.push({*r, sym[left].prev});
    }
    if (std::optional<int32_t> r = rank_of(left)) heap.push({*r, left});
  }
  const size_t first = ids->size();
  for (int k = sym.empty() ? -1 : 0; k >= 0; k = sym[k].next) {
    // fuse_unk: an unk right after an unk of this word is the same unk.
    const bool after_unk = ids->size() > first && unk_id_ && ids->back() == *unk_id_;
    const size_t before = ids->size();
    if (absl::Status s = EmitSymbol(sym[k].text, ids); !s.ok()) return s;
    if (fuse_unk_ && after_unk && ids->size() == before + 1 && ids->back() == *unk_id_ &&
        !vocab_.count(sym[k].text)) {
      ids->pop_back();
    }
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::EmitSymbol(const std::string& s, std::vector<int32_t>* ids) const {
  auto it = vocab_.find(s);
  if (it != vocab_.end()) {
    ids->push_back(it->second);
    return absl::OkStatus();
  }
  if (byte_fallback_) {
    const size_t before = ids->size();
    bool all = true;
    for (const unsigned char c : s) {
      auto b = vocab_.find(absl::StrFormat("<0x%02X>", c));
      if (b == vocab_.end()) {
        all = false;
        break;
      }
      ids->push_back(b->second);
    }
    if (all) return absl::OkStatus();
    ids->resize(before);
  }
  if (unk_id_) {
    ids->push_back(*unk_id_);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer: symbol '", Excerpt(s), "' is not in the vocabulary and there is no unk token"));
}

std::string Tokenizer::TokenBytes(int32_t id, bool skip_special, bool first, bool last) const {
  auto added = added_by_id_.find(id);
  const bool is_added = added != added_by_id_.end();
  if (is_added && added_[added->second].special && skip_special) return "";
  if (!is_added && (id < 0 || static_cast<size_t>(id) >= id_to_token_.size())) return "";
  const std::string& tok = is_added ? added_[added->second].match : id_to_token_[id];
  if (!byte_level_) {
    // The decoder chain runs on added tokens' text too (HF decodes the
    // token strings, whatever their origin).
    int byte = 0;
    if (!is_added && decode_byte_fallback_ && tok.size() == 6 && tok.starts_with("<0x") && tok[5] == '>' &&
        absl::SimpleHexAtoi(absl::string_view(tok.data() + 3, 2), &byte)) {
      return std::string(1, static_cast<char>(byte));
    }
    std::string out = tok;
    if (first && !metaspace_first_drop_.empty()) out = absl::StrReplaceAll(out, {{metaspace_first_drop_, ""}});
    for (const auto& [pattern, content] : decode_replace_) out = absl::StrReplaceAll(out, {{pattern, content}});
    if (wordpiece_prefix_) {
      // HF's WordPiece decoder: a later token loses the prefix or gains a
      // space, then each token is cleaned up on its own.
      if (!first) {
        if (out.starts_with(*wordpiece_prefix_)) {
          out.erase(0, wordpiece_prefix_->size());
        } else {
          out.insert(0, " ");
        }
      }
      if (wordpiece_cleanup_) {
        // One replacement after another, in HF's order.
        for (const auto& [from, to] : std::initializer_list<std::pair<const char*, const char*>>{
                 {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
                 {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}}) {
          out = absl::StrReplaceAll(out, {{from, to}});
        }
      }
    }
    if (!bpe_decoder_suffix_.empty()) out = absl::StrReplaceAll(out, {{bpe_decoder_suffix_, last ? "" : " "}});
    return out;
  }
  if (is_added) return tok;
  const ByteMap& bm = Bytes();
  std::string out;
  for (size_t i = 0; i < tok.size();) {
    const char32_t cp = NextCodePoint(tok, &i);
    auto it = bm.cp_to_byte.find(cp);
    if (it != bm.cp_to_byte.end()) {
      out.push_back(static_cast<char>(it->second));
    } else {
      AppendUtf8(cp, &out);
    }
  }
  return out;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  size_t last = ids.size();
  for (size_t k = ids.size(); k-- > 0;) {
    if (!(skip_special && IsSpecial(ids[k]))) {
      last = k;
      break;
    }
  }
  bool first = true;
  for (size_t k = 0; k < ids.size(); ++k) {
    if (skip_special && IsSpecial(ids[k])) continue;
    bytes += TokenBytes(ids[k], skip_special, first, k == last);
    first = false;
  }
  std::string text = Utf8Sanitize(bytes);
  for (int k = 0; k < strip_leading_ && !text.empty() && text[0] == ' '; ++k) text.erase(0, 1);
  return text;
}

}  // namespace tessera
