#include "server/scheduler/output_text.h"

#include <algorithm>

namespace tessera {

OutputText::OutputText(const Tokenizer& tokenizer, std::vector<std::string> stop_strings)
    : tokenizer_(tokenizer), stop_strings_(std::move(stop_strings)) {}

std::string OutputText::Append(int32_t token_id) {
  if (stopped_) return "";
  const bool first = !any_token_;
  const bool skipped = tokenizer_.IsSpecial(token_id);
  if (!skipped) any_token_ = true;
  std::string bytes = tokenizer_.TokenBytes(token_id, /*skip_special=*/true, first);
  if (tokenizer_.decodes_last_differently() && !skipped) {
    // What the previous token loses as the last one is released now that it
    // is not; what this token would lose is held until the next one.
    const std::string as_last = tokenizer_.TokenBytes(token_id, /*skip_special=*/true, first, /*last=*/true);
    std::string released = std::move(not_last_tail_);
    not_last_tail_.clear();
    if (bytes.size() > as_last.size() && bytes.starts_with(as_last)) {
      not_last_tail_ = bytes.substr(as_last.size());
      bytes.resize(as_last.size());
    }
    bytes = released + bytes;
  }
  std::string piece = decoder_.Push(bytes);
  if (!started_ && !piece.empty()) {
    // The decoder's Strip of the whole text's first space(s), as HF's
    // decode of the generated ids does.
    for (int k = 0; k < tokenizer_.strip_leading_spaces() && !piece.empty() && piece[0] == ' '; ++k) {
      piece.erase(0, 1);
    }
    started_ = true;
  }
  held_ += piece;
  return Release();
}

std::string OutputText::Flush() {
  if (stopped_) return "";
  held_ += decoder_.Finish();
  std::string out = Release();
  out += held_;
  held_.clear();
  return out;
}

std::string OutputText::Release() {
  // Earliest complete match wins.
  size_t cut = std::string::npos;
  for (const std::string& s : stop_strings_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string.
  size_t keep = 0;
  for (const std::string& s : stop_strings_) {
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k) {
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

}  // namespace tessera
