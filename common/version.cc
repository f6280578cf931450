#include "common/version.h"

#include "tessera_version.inc"

namespace tessera {

const char* Version() { return TESSERA_VERSION_STRING; }

}  // namespace tessera
