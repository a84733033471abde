#include "agent/field_limits.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace hearth::agent {

namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string Join(const std::string& prefix, absl::string_view name) {
  return prefix.empty() ? std::string(name) : absl::StrCat(prefix, ".", name);
}

absl::Status TooLong(const std::string& path, size_t size) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": ", size, " bytes, at most ", kMaxFieldBytes));
}

absl::Status Check(const Message& message, const std::string& prefix, int depth) {
  if (depth > 32) return absl::InvalidArgumentError(absl::StrCat(prefix, ": nested too deeply"));
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const std::string path = Join(prefix, field->name());
    if (field->is_repeated()) {
      int count = reflection->FieldSize(message, field);
      if (count > kMaxRepeated) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": ", count, " entries, at most ", kMaxRepeated));
      }
      for (int i = 0; i < count; ++i) {
        const std::string item = absl::StrCat(path, "[", i, "]");
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
          std::string scratch;
          const std::string& value =
              reflection->GetRepeatedStringReference(message, field, i, &scratch);
          if (value.size() > kMaxFieldBytes) return TooLong(item, value.size());
        } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          absl::Status nested =
              Check(reflection->GetRepeatedMessage(message, field, i), item, depth + 1);
          if (!nested.ok()) return nested;
        }
      }
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      std::string scratch;
      const std::string& value = reflection->GetStringReference(message, field, &scratch);
      if (value.size() > kMaxFieldBytes) return TooLong(path, value.size());
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      absl::Status nested = Check(reflection->GetMessage(message, field), path, depth + 1);
      if (!nested.ok()) return nested;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckFieldSizes(const Message& message) { return Check(message, "", 0); }

std::string TruncateMessage(absl::string_view message) {
  if (message.size() <= kMaxErrorMessage) return std::string(message);
  size_t end = kMaxErrorMessage;
  // Back up to the start of a UTF-8 sequence.
  while (end > 0 && (static_cast<unsigned char>(message[end]) & 0xc0) == 0x80) --end;
  return absl::StrCat(message.substr(0, end), "... (", message.size() - end, " more bytes)");
}

}  // namespace hearth::agent
