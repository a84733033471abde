#include "agent/spec_diff.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hearth/v1/hearth.pb.h"

namespace hearth::agent {
namespace {

using hearth::v1::CreateVmRequest;
using hearth::v1::VmConfig;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// A request as CreateVm would compare it: labels and config only.
CreateVmRequest Request() {
  CreateVmRequest request;
  (*request.mutable_labels())["env"] = "prod";
  (*request.mutable_labels())["tier"] = "web";
  VmConfig* config = request.mutable_config();
  config->mutable_boot_source()->set_kernel_image_path("/images/vmlinux");
  config->mutable_machine_config()->set_vcpu_count(2);
  config->mutable_machine_config()->set_mem_size_mib(256);
  for (int i = 0; i < 3; ++i) {
    hearth::v1::Drive* drive = config->add_drives();
    drive->set_drive_id("d" + std::to_string(i));
    drive->set_path_on_host("/images/disk" + std::to_string(i));
  }
  return request;
}

std::vector<std::string> Diff(const CreateVmRequest& a, const CreateVmRequest& b,
                              size_t limit = 8) {
  return DifferingFields(a, b, "", limit);
}

TEST(DifferingFields, IdenticalMessagesHaveNoDifferences) {
  EXPECT_THAT(Diff(Request(), Request()), IsEmpty());
  EXPECT_THAT(Diff(CreateVmRequest(), CreateVmRequest()), IsEmpty());
}

TEST(DifferingFields, ChangedScalarIsNamedByItsPath) {
  CreateVmRequest b = Request();
  b.mutable_config()->mutable_machine_config()->set_vcpu_count(4);
  EXPECT_THAT(Diff(Request(), b), ElementsAre("config.machine_config.vcpu_count"));
}

TEST(DifferingFields, PrefixIsPrepended) {
  VmConfig a = Request().config();
  VmConfig b = a;
  b.mutable_machine_config()->set_mem_size_mib(512);
  EXPECT_THAT(DifferingFields(a, b, "spec"), ElementsAre("spec.machine_config.mem_size_mib"));
}

TEST(DifferingFields, EmptyPrefixStartsWithTheFieldName) {
  VmConfig a = Request().config();
  VmConfig b = a;
  b.mutable_machine_config()->set_mem_size_mib(512);
  EXPECT_THAT(DifferingFields(a, b, ""), ElementsAre("machine_config.mem_size_mib"));
}

// A proto3 `optional` field set to its default differs from an unset one:
// unset boot_args means Firecracker's default command line, "" means none.
TEST(DifferingFields, OptionalFieldSetVersusUnsetDiffers) {
  CreateVmRequest b = Request();
  b.mutable_config()->mutable_boot_source()->set_boot_args("");
  EXPECT_THAT(Diff(Request(), b), ElementsAre("config.boot_source.boot_args"));
  EXPECT_THAT(Diff(b, Request()), ElementsAre("config.boot_source.boot_args"));
}

TEST(DifferingFields, OptionalFieldSetToZeroDiffersFromUnset) {
  CreateVmRequest a = Request();
  a.mutable_config()->mutable_machine_config()->clear_vcpu_count();
  CreateVmRequest b = a;
  b.mutable_config()->mutable_machine_config()->set_vcpu_count(0);
  EXPECT_THAT(Diff(a, b), ElementsAre("config.machine_config.vcpu_count"));
}

TEST(DifferingFields, SubmessageSetButEmptyDiffersFromUnset) {
  CreateVmRequest b = Request();
  b.mutable_config()->mutable_entropy();
  EXPECT_THAT(Diff(Request(), b), ElementsAre("config.entropy"));
}

TEST(DifferingFields, AddedLabelIsNamedByItsKey) {
  CreateVmRequest b = Request();
  (*b.mutable_labels())["zone"] = "a";
  EXPECT_THAT(Diff(Request(), b), ElementsAre("labels[zone]"));
}

TEST(DifferingFields, RemovedLabelIsNamedByItsKey) {
  CreateVmRequest b = Request();
  b.mutable_labels()->erase("tier");
  EXPECT_THAT(Diff(Request(), b), ElementsAre("labels[tier]"));
}

TEST(DifferingFields, ChangedLabelIsNamedByItsKey) {
  CreateVmRequest b = Request();
  (*b.mutable_labels())["env"] = "dev";
  EXPECT_THAT(Diff(Request(), b), ElementsAre("labels[env]"));
}

TEST(DifferingFields, InterleavedAddedAndRemovedLabelsAreEachNamed) {
  CreateVmRequest a, b;
  for (const char* key : {"b", "d"}) (*a.mutable_labels())[key] = "1";
  for (const char* key : {"a", "c", "e"}) (*b.mutable_labels())[key] = "1";
  EXPECT_THAT(Diff(a, b), UnorderedElementsAre("labels[a]", "labels[b]", "labels[c]", "labels[d]",
                                               "labels[e]"));
}

TEST(DifferingFields, ChangedFieldOfARepeatedElementIsIndexed) {
  CreateVmRequest b = Request();
  b.mutable_config()->mutable_drives(1)->set_path_on_host("/images/other");
  EXPECT_THAT(Diff(Request(), b), ElementsAre("config.drives[1].path_on_host"));
}

TEST(DifferingFields, DeepFieldOfARepeatedElementIsIndexed) {
  CreateVmRequest b = Request();
  b.mutable_config()->mutable_drives(2)->mutable_rate_limiter()->mutable_bandwidth()->set_size(
      1024);
  EXPECT_THAT(Diff(Request(), b), ElementsAre("config.drives[2].rate_limiter"));
}

TEST(DifferingFields, DeepChangeInsideARepeatedElementIsIndexed) {
  CreateVmRequest a = Request();
  a.mutable_config()->mutable_drives(2)->mutable_rate_limiter()->mutable_bandwidth()->set_size(
      1024);
  CreateVmRequest b = a;
  b.mutable_config()->mutable_drives(2)->mutable_rate_limiter()->mutable_bandwidth()->set_size(
      2048);
  EXPECT_THAT(Diff(a, b), ElementsAre("config.drives[2].rate_limiter.bandwidth.size"));
}

TEST(DifferingFields, AddedRepeatedElementIsIndexedWhereItAppears) {
  CreateVmRequest b = Request();
  b.mutable_config()->add_drives()->set_drive_id("d3");
  EXPECT_THAT(Diff(Request(), b), ElementsAre("config.drives[3]"));
}

TEST(DifferingFields, RemovedRepeatedElementIsIndexedWhereItWas) {
  CreateVmRequest b = Request();
  b.mutable_config()->mutable_drives()->RemoveLast();
  EXPECT_THAT(Diff(Request(), b), ElementsAre("config.drives[2]"));
}

TEST(DifferingFields, ChangedRepeatedScalarIsIndexed) {
  CreateVmRequest a = Request();
  a.mutable_config()->mutable_cpu_config()->add_kvm_capabilities("121");
  a.mutable_config()->mutable_cpu_config()->add_kvm_capabilities("!7");
  CreateVmRequest b = a;
  b.mutable_config()->mutable_cpu_config()->set_kvm_capabilities(1, "!8");
  EXPECT_THAT(Diff(a, b), ElementsAre("config.cpu_config.kvm_capabilities[1]"));
}

TEST(DifferingFields, MapInsideANestedMessageIsKeyed) {
  CreateVmRequest a = Request();
  a.mutable_config()->mutable_metrics()->set_metrics_path("/images/metrics");
  CreateVmRequest b = a;
  (*b.mutable_config()->mutable_metrics()->mutable_properties())["rack"] = "r1";
  EXPECT_THAT(Diff(a, b), ElementsAre("config.metrics.properties[rack]"));
}

TEST(DifferingFields, StructValuesAreKeyed) {
  CreateVmRequest a = Request();
  (*a.mutable_config()->mutable_mmds()->mutable_fields())["host"].set_string_value("a");
  CreateVmRequest b = a;
  (*b.mutable_config()->mutable_mmds()->mutable_fields())["host"].set_string_value("b");
  EXPECT_THAT(Diff(a, b), ElementsAre("config.mmds.fields[host].string_value"));
}

TEST(DifferingFields, EveryDifferenceIsListedOnce) {
  CreateVmRequest b = Request();
  (*b.mutable_labels())["env"] = "dev";
  b.mutable_config()->mutable_machine_config()->set_vcpu_count(4);
  b.mutable_config()->mutable_machine_config()->set_mem_size_mib(512);
  b.mutable_config()->mutable_drives(0)->set_path_on_host("/images/x");
  b.mutable_config()->mutable_drives(0)->set_is_root_device(true);
  EXPECT_THAT(
      Diff(Request(), b),
      UnorderedElementsAre("labels[env]", "config.machine_config.vcpu_count",
                           "config.machine_config.mem_size_mib", "config.drives[0].path_on_host",
                           "config.drives[0].is_root_device"));
}

TEST(DifferingFields, AtMostLimitPathsAreReturned) {
  CreateVmRequest b = Request();
  for (int i = 0; i < 3; ++i) {
    b.mutable_config()->mutable_drives(i)->set_path_on_host("/images/changed");
  }
  (*b.mutable_labels())["env"] = "dev";
  EXPECT_EQ(Diff(Request(), b, 2).size(), 2u);
  EXPECT_EQ(Diff(Request(), b, 1).size(), 1u);
  EXPECT_THAT(Diff(Request(), b, 0), IsEmpty());
  EXPECT_EQ(Diff(Request(), b, 100).size(), 4u);
}

}  // namespace
}  // namespace hearth::agent
