#ifndef TESSERA_COMMON_VERSION_H_
#define TESSERA_COMMON_VERSION_H_

namespace tessera {

#ifndef TESSERA_VERSION_STRING
#define TESSERA_VERSION_STRING "0.0.0-dev"
#endif
inline constexpr char kVersion[] = TESSERA_VERSION_STRING;

}  // namespace tessera

#endif  // TESSERA_COMMON_VERSION_H_
