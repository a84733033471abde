#include "agent/spec_diff.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/util/message_differencer.h"

namespace hearth::agent {
namespace {

using google::protobuf::util::MessageDifferencer;

class PathReporter : public MessageDifferencer::Reporter {
 public:
  PathReporter(std::string prefix, size_t limit, std::vector<std::string>* paths)
      : prefix_(std::move(prefix)), limit_(limit), paths_(paths) {}

  void ReportAdded(const google::protobuf::Message&, const google::protobuf::Message&,
                   const std::vector<MessageDifferencer::SpecificField>& path) override {
    Add(path, /*in_second=*/true);
  }
  void ReportDeleted(const google::protobuf::Message&, const google::protobuf::Message&,
                     const std::vector<MessageDifferencer::SpecificField>& path) override {
    Add(path, /*in_second=*/false);
  }
  void ReportModified(const google::protobuf::Message&, const google::protobuf::Message&,
                      const std::vector<MessageDifferencer::SpecificField>& path) override {
    // After the fields that differ inside a message, the differencer also
    // reports each enclosing message as modified ("config.machine_config",
    // "config"); those add nothing (protobuf's StreamReporter skips them too).
    const google::protobuf::FieldDescriptor* last = path.empty() ? nullptr : path.back().field;
    if (last != nullptr && last->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      return;
    }
    Add(path, /*in_second=*/false);
  }

 private:
  // `in_second`: the difference exists only in the second message (an
  // addition), so its map entries must be taken from there.
  void Add(const std::vector<MessageDifferencer::SpecificField>& path, bool in_second) {
    if (paths_->size() >= limit_) return;
    std::string text = prefix_;
    for (const MessageDifferencer::SpecificField& field : path) {
      if (field.field == nullptr) continue;
      // Inside a map entry: the entry's "key"/"value" fields add nothing.
      if (field.field->containing_type()->options().map_entry()) continue;
      absl::StrAppend(&text, text.empty() ? "" : ".", field.field->name());
      if (field.field->is_map()) {
        // For an added entry map_entry1 is not reset by the differencer and
        // may name an earlier, unrelated entry.
        const google::protobuf::Message* entry = in_second ? field.map_entry2 : field.map_entry1;
        if (entry == nullptr) entry = in_second ? field.map_entry1 : field.map_entry2;
        if (entry != nullptr) {
          const google::protobuf::FieldDescriptor* key =
              entry->GetDescriptor()->FindFieldByName("key");
          if (key != nullptr && key->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
            absl::StrAppend(&text, "[", entry->GetReflection()->GetString(*entry, key), "]");
          }
        }
      } else if (field.field->is_repeated() && field.index >= 0) {
        absl::StrAppend(&text, "[", field.index, "]");
      }
    }
    for (const std::string& existing : *paths_) {
      if (existing == text) return;
    }
    paths_->push_back(text);
  }

  std::string prefix_;
  size_t limit_;
  std::vector<std::string>* paths_;
};

}  // namespace

std::vector<std::string> DifferingFields(const google::protobuf::Message& a,
                                         const google::protobuf::Message& b,
                                         const std::string& prefix, size_t limit) {
  std::vector<std::string> paths;
  PathReporter reporter(prefix, limit, &paths);
  MessageDifferencer differencer;
  differencer.ReportDifferencesTo(&reporter);
  differencer.Compare(a, b);
  return paths;
}

}  // namespace hearth::agent
