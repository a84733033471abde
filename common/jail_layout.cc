#include "common/jail_layout.h"

#include "absl/strings/str_cat.h"

namespace hearth {

std::string JailDirectory(const std::string& chroot_base_dir, const std::string& exec_file,
                          const std::string& id) {
  size_t slash = exec_file.rfind('/');
  std::string name = slash == std::string::npos ? exec_file : exec_file.substr(slash + 1);
  return absl::StrCat(chroot_base_dir, "/", name, "/", id);
}

}  // namespace hearth
