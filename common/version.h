#ifndef TESSERA_COMMON_VERSION_H_
#define TESSERA_COMMON_VERSION_H_

namespace tessera {

// "0.1.0+<git describe>", fixed when this binary was built.
const char* Version();

}  // namespace tessera

#endif  // TESSERA_COMMON_VERSION_H_
