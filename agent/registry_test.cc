#include "agent/registry.h"

#include <vector>

#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;

api::Vm MakeVm(const std::string& id, api::VmState state = api::VM_STATE_CONFIGURING,
               uint32_t vcpus = 1, uint32_t mib = 128) {
  api::Vm vm;
  vm.set_vm_id(id);
  vm.set_state(state);
  vm.mutable_spec()->mutable_machine_config()->set_vcpu_count(vcpus);
  vm.mutable_spec()->mutable_machine_config()->set_mem_size_mib(mib);
  return vm;
}

Registry MakeRegistry(HistoryLimits history = {}) {
  return Registry(Capacity{8, 1024, 4}, history);
}

struct Collected {
  std::vector<api::WatchEvent> events;
  Registry::Sink sink() {
    return [this](const api::WatchEvent& e) { events.push_back(e); };
  }
};

TEST(Registry, PublishAssignsIncreasingVersions) {
  Registry registry = MakeRegistry();
  api::Vm a = MakeVm("a");
  EXPECT_EQ(registry.Publish(&a, api::WatchEvent::ADDED), 1u);
  EXPECT_EQ(a.resource_version(), 1u);
  EXPECT_EQ(registry.Publish(&a, api::WatchEvent::MODIFIED), 2u);
  EXPECT_EQ(registry.Get("a")->resource_version(), 2u);
  EXPECT_EQ(registry.Publish(&a, api::WatchEvent::DELETED), 3u);
  EXPECT_EQ(registry.Get("a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Get("a").status().message(), "vm \"a\" not found");
  EXPECT_EQ(registry.Get("bad id").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Registry, LoadContinuesFromTheHighestVersion) {
  Registry registry = MakeRegistry();
  api::Vm a = MakeVm("a");
  a.set_resource_version(40);
  registry.Load(30, {a});
  EXPECT_EQ(registry.version(), 40u);
  registry.Load(50, {a});
  EXPECT_EQ(registry.version(), 50u);
  EXPECT_EQ(registry.history_entries(), 0u);
}

TEST(Registry, ListPagesBySelector) {
  Registry registry = MakeRegistry();
  for (const char* id : {"a", "b", "c", "d"}) {
    api::Vm vm = MakeVm(id);
    (*vm.mutable_labels())["app"] = std::string(id) == "c" ? "db" : "web";
    registry.Publish(&vm, api::WatchEvent::ADDED);
  }
  api::ListVmsRequest request;
  request.set_label_selector("app=web");
  request.set_page_size(2);
  absl::StatusOr<api::ListVmsResponse> page = registry.List(request);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->vms_size(), 2);
  EXPECT_EQ(page->vms(1).vm_id(), "b");
  EXPECT_EQ(page->resource_version(), 4u);
  request.set_page_token(page->next_page_token());
  page = registry.List(request);
  ASSERT_EQ(page->vms_size(), 1);
  EXPECT_EQ(page->vms(0).vm_id(), "d");
  EXPECT_TRUE(page->next_page_token().empty());
  request.set_label_selector("app=db");
  EXPECT_EQ(registry.List(request).status().message(),
            "page_token: not from a ListVms with the same label_selector");
  request.set_page_token("!!!");
  EXPECT_EQ(registry.List(request).status().message(), "page_token: malformed");
}

TEST(Registry, WatchFromZeroListsThenBookmarks) {
  Registry registry = MakeRegistry();
  api::Vm a = MakeVm("a");
  api::Vm b = MakeVm("b");
  registry.Publish(&a, api::WatchEvent::ADDED);
  registry.Publish(&b, api::WatchEvent::ADDED);
  Collected got;
  api::WatchVmsRequest request;
  ASSERT_TRUE(registry.Watch(request, got.sink()).ok());
  ASSERT_EQ(got.events.size(), 3u);
  EXPECT_EQ(got.events[0].type(), api::WatchEvent::ADDED);
  EXPECT_EQ(got.events[2].type(), api::WatchEvent::BOOKMARK);
  EXPECT_EQ(got.events[2].resource_version(), 2u);
  registry.Publish(&a, api::WatchEvent::MODIFIED);
  ASSERT_EQ(got.events.size(), 4u);
  EXPECT_EQ(got.events[3].resource_version(), 3u);
}

TEST(Registry, WatchFromNReplaysOnlyLaterMatchingChanges) {
  Registry registry = MakeRegistry();
  api::Vm a = MakeVm("a");
  api::Vm b = MakeVm("b");
  registry.Publish(&a, api::WatchEvent::ADDED);     // 1
  registry.Publish(&b, api::WatchEvent::ADDED);     // 2
  registry.Publish(&a, api::WatchEvent::MODIFIED);  // 3
  Collected got;
  api::WatchVmsRequest request;
  request.set_resource_version(1);
  request.set_vm_id("a");
  ASSERT_TRUE(registry.Watch(request, got.sink()).ok());
  ASSERT_EQ(got.events.size(), 1u);
  EXPECT_EQ(got.events[0].resource_version(), 3u);
  registry.Publish(&b, api::WatchEvent::MODIFIED);  // not a's
  EXPECT_EQ(got.events.size(), 1u);
}

TEST(Registry, WatchTooOldOrFutureIsOutOfRange) {
  Registry registry = MakeRegistry(HistoryLimits{2, 1 << 20});
  api::Vm a = MakeVm("a");
  for (int i = 0; i < 5; ++i) registry.Publish(&a, api::WatchEvent::MODIFIED);
  EXPECT_EQ(registry.history_entries(), 2u);  // versions 4 and 5
  Collected got;
  api::WatchVmsRequest request;
  request.set_resource_version(3);  // 4 and 5 are retained: resumable
  EXPECT_TRUE(registry.Watch(request, got.sink()).ok());
  request.set_resource_version(2);  // 3 is gone
  absl::StatusOr<int> old = registry.Watch(request, got.sink());
  EXPECT_EQ(old.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(old.status().message().find("list again"), absl::string_view::npos);
  request.set_resource_version(6);
  EXPECT_EQ(registry.Watch(request, got.sink()).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(Registry, AfterARestartOnlyTheCurrentVersionResumes) {
  // History lives in memory: a restarted agent knows its versions but not
  // the changes before them.
  Registry registry = MakeRegistry();
  registry.Load(1000, {});
  Collected got;
  api::WatchVmsRequest request;
  request.set_resource_version(999);
  EXPECT_EQ(registry.Watch(request, got.sink()).status().code(), absl::StatusCode::kOutOfRange);
  request.set_resource_version(1000);
  EXPECT_TRUE(registry.Watch(request, got.sink()).ok());
  api::Vm a = MakeVm("a");
  registry.Publish(&a, api::WatchEvent::ADDED);
  ASSERT_EQ(got.events.size(), 1u);
  EXPECT_EQ(got.events[0].resource_version(), 1001u);
}

TEST(Registry, HistoryIsBoundedInBytes) {
  Registry registry = MakeRegistry(HistoryLimits{100000, 64 * 1024});
  api::Vm a = MakeVm("a");
  (*a.mutable_labels())["big"] = std::string(60, 'x');
  a.mutable_status()->set_reason(std::string(4000, 'r'));
  for (int i = 0; i < 200; ++i) registry.Publish(&a, api::WatchEvent::MODIFIED);
  EXPECT_LE(registry.history_bytes(), 64u * 1024);
  EXPECT_GT(registry.history_entries(), 0u);
  EXPECT_LT(registry.history_entries(), 20u);
}

TEST(Registry, UnwatchStopsDelivery) {
  Registry registry = MakeRegistry();
  Collected got;
  absl::StatusOr<int> id = registry.Watch(api::WatchVmsRequest(), got.sink());
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(registry.watchers(), 1u);
  registry.SendBookmarks();
  EXPECT_EQ(got.events.size(), 2u);
  registry.Unwatch(*id);
  api::Vm a = MakeVm("a");
  registry.Publish(&a, api::WatchEvent::ADDED);
  EXPECT_EQ(got.events.size(), 2u);
  EXPECT_EQ(registry.watchers(), 0u);
}

TEST(Registry, BadWatchRequests) {
  Registry registry = MakeRegistry();
  Collected got;
  api::WatchVmsRequest request;
  request.set_label_selector("=");
  EXPECT_EQ(registry.Watch(request, got.sink()).status().code(),
            absl::StatusCode::kInvalidArgument);
  request.Clear();
  request.set_vm_id("no spaces allowed");
  EXPECT_EQ(registry.Watch(request, got.sink()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Registry, AdmissionCountsOnlyLiveVms) {
  Registry registry = MakeRegistry();  // 8 vCPUs, 1024 MiB, 4 VMs
  api::Vm a = MakeVm("a", api::VM_STATE_RUNNING, 4, 512);
  api::Vm dead = MakeVm("dead", api::VM_STATE_FAILED, 8, 1024);
  registry.Publish(&a, api::WatchEvent::ADDED);
  registry.Publish(&dead, api::WatchEvent::ADDED);
  EXPECT_EQ(registry.Allocated().vcpus(), 4u);
  EXPECT_EQ(registry.Allocated().vms(), 1u);
  EXPECT_EQ(registry.Allocated("a").vms(), 0u);

  api::VmConfig config = MakeVm("x", api::VM_STATE_CONFIGURING, 4, 512).spec();
  EXPECT_TRUE(registry.Admit(config, "").ok());
  config.mutable_machine_config()->set_vcpu_count(5);
  EXPECT_EQ(registry.Admit(config, "").message(),
            "not enough vCPU capacity: 9 needed in all, the host admits 8");
  EXPECT_TRUE(registry.Admit(config, "a").ok());  // replaces a's share
  config.mutable_machine_config()->set_vcpu_count(1);
  config.mutable_machine_config()->set_mem_size_mib(513);
  EXPECT_EQ(registry.Admit(config, "").code(), absl::StatusCode::kResourceExhausted);
  config.mutable_machine_config()->set_mem_size_mib(1);
  EXPECT_TRUE(registry.Admit(config, "", 3).ok());
  EXPECT_EQ(registry.Admit(config, "", 4).message(), "the host runs its maximum of 4 VMs");
}

TEST(Registry, ConsolesAndMetricsUntilForgotten) {
  Registry registry = MakeRegistry();
  auto console = std::make_shared<ConsoleBuffer>(1024);
  registry.SetConsole("a", console);
  registry.SetMetrics("a", "{}");
  EXPECT_EQ(*registry.Console("a"), console);
  EXPECT_EQ(registry.LastMetrics().at("a"), "{}");
  registry.Forget("a");
  EXPECT_EQ(registry.Console("a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry.LastMetrics().empty());
}

}  // namespace
}  // namespace hearth::agent
