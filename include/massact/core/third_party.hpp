// massact/core/third_party.hpp - include other libraries' headers (Eigen, xsimd, intrinsics) with their
// warnings silenced, so that users building with -Wall -Wextra -Werror are not broken by them:
//   MASSACT_THIRD_PARTY_BEGIN
//   #include <Eigen/Core>
//   MASSACT_THIRD_PARTY_END
#pragma once

#if defined(__clang__)
// Clang knows neither -Wclass-memaccess nor -Wmaybe-uninitialized: without this its -Werror refuses them.
#define MASSACT_IGNORE_UNKNOWN_WARNINGS _Pragma("GCC diagnostic ignored \"-Wunknown-warning-option\"")
#else
#define MASSACT_IGNORE_UNKNOWN_WARNINGS
#endif

#if defined(__GNUC__)
#define MASSACT_THIRD_PARTY_BEGIN                                        \
    _Pragma("GCC diagnostic push")                                       \
    MASSACT_IGNORE_UNKNOWN_WARNINGS                                      \
    _Pragma("GCC diagnostic ignored \"-Wall\"")                          \
    _Pragma("GCC diagnostic ignored \"-Wextra\"")                        \
    _Pragma("GCC diagnostic ignored \"-Wdeprecated-copy\"")              \
    _Pragma("GCC diagnostic ignored \"-Wclass-memaccess\"")              \
    _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")          \
    _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")                \
    _Pragma("GCC diagnostic ignored \"-Wunused-variable\"")              \
    _Pragma("GCC diagnostic ignored \"-Wunused-but-set-variable\"")      \
    _Pragma("GCC diagnostic ignored \"-Wunused-parameter\"")             \
    _Pragma("GCC diagnostic ignored \"-Wignored-attributes\"")
#define MASSACT_THIRD_PARTY_END _Pragma("GCC diagnostic pop")
#else
#define MASSACT_THIRD_PARTY_BEGIN
#define MASSACT_THIRD_PARTY_END
#endif
