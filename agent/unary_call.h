// UnaryCall: the end of one unary RPC of HearthService (service.cc,
// service_resources.cc): records it in ApiMetrics and finishes the reactor
// with the call's status. Internal to the service's files.
#ifndef HEARTH_AGENT_UNARY_CALL_H_
#define HEARTH_AGENT_UNARY_CALL_H_

#include <functional>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "agent/api_metrics.h"
#include "agent/service.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace hearth::agent {

// Copyable, so completions running on the supervisor thread can hold it.
class UnaryCall {
 public:
  UnaryCall(grpc::CallbackServerContext* context, ApiMetrics* metrics, const char* method)
      : reactor_(context->DefaultReactor()),
        metrics_(metrics),
        method_(method),
        start_(absl::Now()) {}

  grpc::ServerUnaryReactor* Finish(const absl::Status& status) const {
    metrics_->Record(method_, status.code(), absl::Now() - start_);
    if (!status.ok() && status.code() != absl::StatusCode::kNotFound) {
      VLOG(1) << method_ << ": " << status;
    }
    reactor_->Finish(ToGrpcStatus(status));
    return reactor_;
  }
  grpc::ServerUnaryReactor* reactor() const { return reactor_; }

  // A completion that copies a result into `*response` and finishes.
  template <typename T>
  std::function<void(absl::StatusOr<T>)> Into(T* response) const {
    UnaryCall call = *this;
    return [call, response](absl::StatusOr<T> result) {
      if (result.ok()) *response = std::move(*result);
      call.Finish(result.status());
    };
  }

 private:
  grpc::ServerUnaryReactor* reactor_;
  ApiMetrics* metrics_;
  const char* method_;
  absl::Time start_;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_UNARY_CALL_H_
