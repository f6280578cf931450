#include "model/utf8.h"

#include <cstdint>

namespace tessera {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

// Length of the sequence a lead byte announces, 0 when it cannot start one.
int SequenceLength(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Valid range of the second byte after lead byte b.
bool SecondByteOk(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

// Decodes from s[i]. Returns the bytes consumed and whether they form a valid
// sequence; *incomplete is set when the input ended inside a sequence that was
// valid so far.
size_t Step(std::string_view s, size_t i, bool* valid, bool* incomplete) {
  *incomplete = false;
  const uint8_t lead = static_cast<uint8_t>(s[i]);
  const int len = SequenceLength(lead);
  if (len == 0) {
    *valid = false;
    return 1;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) {
      *valid = false;
      *incomplete = true;
      return k;
    }
    const uint8_t b = static_cast<uint8_t>(s[i + k]);
    const bool ok = k == 1 ? SecondByteOk(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      *valid = false;
      return k;  // the maximal subpart ends before b
    }
  }
  *valid = true;
  return len;
}

}  // namespace

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Utf8Sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    bool valid, incomplete;
    const size_t n = Step(s, i, &valid, &incomplete);
    if (valid) {
      out.append(s.substr(i, n));
    } else {
      out.append(kReplacement);
    }
    i += n;
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    bool valid, incomplete;
    i += Step(s, i, &valid, &incomplete);
    if (!valid) return false;
  }
  return true;
}

std::string Utf8StreamDecoder::Push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    bool valid, incomplete;
    const size_t n = Step(pending_, i, &valid, &incomplete);
    if (incomplete) break;  // wait for the rest of the sequence
    if (valid) {
      out.append(pending_, i, n);
    } else {
      out.append(kReplacement);
    }
    i += n;
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8StreamDecoder::Finish() {
  std::string out = Utf8Sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace tessera
