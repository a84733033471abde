// Propagation helpers for absl::Status / absl::StatusOr, in the spirit of the
// macros Abseil-based projects keep privately.
//
//   RETURN_IF_ERROR(DoThing());
//   ASSIGN_OR_RETURN(UniqueFd fd, OpenThing(path));
//
// Both evaluate their argument exactly once and return the error unchanged.
#ifndef HEARTH_COMMON_STATUS_MACROS_H_
#define HEARTH_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status hearth_status_ = (expr);          \
    if (!hearth_status_.ok()) return hearth_status_; \
  } while (false)

#define HEARTH_STATUS_CONCAT_INNER_(a, b) a##b
#define HEARTH_STATUS_CONCAT_(a, b) HEARTH_STATUS_CONCAT_INNER_(a, b)

#define ASSIGN_OR_RETURN(lhs, expr) \
  HEARTH_ASSIGN_OR_RETURN_IMPL_(HEARTH_STATUS_CONCAT_(hearth_statusor_, __LINE__), lhs, expr)

#define HEARTH_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // HEARTH_COMMON_STATUS_MACROS_H_
