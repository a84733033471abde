#include "agent/labels.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hearth::agent {
namespace {

bool ValidKey(absl::string_view key) {
  if (key.empty() || key.size() > 63 || !absl::ascii_isalnum(key[0])) return false;
  for (char c : key) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '/' && c != '-') return false;
  }
  return true;
}

bool ValidValue(absl::string_view value) {
  if (value.size() > 63) return false;
  for (char c : value) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace

absl::Status ValidateVmId(absl::string_view vm_id) {
  if (vm_id.empty() || vm_id.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("vm_id: must be 1 to 64 characters, got ", vm_id.size()));
  }
  for (char c : vm_id) {
    if (!absl::ascii_isalnum(c) && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("vm_id: \"", absl::CHexEscape(vm_id), "\" may only hold [A-Za-z0-9-]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLabels(const Labels& labels) {
  if (labels.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels: at most 64 labels, got ", labels.size()));
  }
  for (const auto& [key, value] : labels) {
    if (!ValidKey(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "labels: key \"", absl::CHexEscape(key),
          "\" must be 1-63 characters of [A-Za-z0-9._/-] starting with a letter or digit"));
    }
    if (!ValidValue(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels[", key, "]: value \"", absl::CHexEscape(value),
                       "\" must be 0-63 characters of [A-Za-z0-9._-]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelSelector> LabelSelector::Parse(absl::string_view text) {
  LabelSelector selector;
  // A blank selector matches everything; within a non-blank one every term
  // must be there ("a=b," is refused, as Kubernetes does).
  if (absl::StripAsciiWhitespace(text).empty()) return selector;
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    absl::string_view part = absl::StripAsciiWhitespace(raw);
    if (part.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("label_selector: \"", absl::CHexEscape(text), "\" has an empty term"));
    }
    Requirement r;
    size_t pos;
    if ((pos = part.find("!=")) != absl::string_view::npos) {
      r = {std::string(absl::StripAsciiWhitespace(part.substr(0, pos))),
           Requirement::Op::kNotEquals,
           std::string(absl::StripAsciiWhitespace(part.substr(pos + 2)))};
    } else if ((pos = part.find("==")) != absl::string_view::npos) {
      r = {std::string(absl::StripAsciiWhitespace(part.substr(0, pos))), Requirement::Op::kEquals,
           std::string(absl::StripAsciiWhitespace(part.substr(pos + 2)))};
    } else if ((pos = part.find('=')) != absl::string_view::npos) {
      r = {std::string(absl::StripAsciiWhitespace(part.substr(0, pos))), Requirement::Op::kEquals,
           std::string(absl::StripAsciiWhitespace(part.substr(pos + 1)))};
    } else if (absl::ConsumePrefix(&part, "!")) {
      r = {std::string(absl::StripAsciiWhitespace(part)), Requirement::Op::kNotExists, ""};
    } else {
      r = {std::string(part), Requirement::Op::kExists, ""};
    }
    if (!ValidKey(r.key) || !ValidValue(r.value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("label_selector: \"", absl::CHexEscape(raw),
                       "\" is not key=value, key==value, key!=value, key or !key"));
    }
    selector.requirements_.push_back(std::move(r));
  }
  return selector;
}

bool LabelSelector::Matches(const Labels& labels) const {
  for (const Requirement& r : requirements_) {
    auto it = labels.find(r.key);
    bool has = it != labels.end();
    switch (r.op) {
      case Requirement::Op::kEquals:
        if (!has || it->second != r.value) return false;
        break;
      case Requirement::Op::kNotEquals:
        if (has && it->second == r.value) return false;
        break;
      case Requirement::Op::kExists:
        if (!has) return false;
        break;
      case Requirement::Op::kNotExists:
        if (has) return false;
        break;
    }
  }
  return true;
}

}  // namespace hearth::agent
