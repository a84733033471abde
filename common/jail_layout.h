// Where hearth-jailer builds a VM's jail, shared by the jailer (which makes
// it) and the agent (which removes it when the VMM is gone):
//   <chroot base>/<file name of the exec file>/<id>/root
#ifndef HEARTH_COMMON_JAIL_LAYOUT_H_
#define HEARTH_COMMON_JAIL_LAYOUT_H_

#include <string>

namespace hearth {

// The jail's directory (its root is JailDirectory(...) + "/root").
std::string JailDirectory(const std::string& chroot_base_dir, const std::string& exec_file,
                          const std::string& id);

}  // namespace hearth

#endif  // HEARTH_COMMON_JAIL_LAYOUT_H_
