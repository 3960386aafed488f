#include "coordinator/schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "coordinator/cron.h"
#include "kube/objects.h"
#include "tests/coordinator/fake_clock.h"
#include "tests/kube/kube_test_util.h"

namespace fsb::coordinator {
namespace {

using kube::testing::kDeadline;
using ::testing::ElementsAre;
using testing::FakeClock;
using namespace std::chrono_literals;

constexpr const char* kNs = "velero";

TimePoint T(std::string_view rfc3339) {
  Result<TimePoint> t = kube::ParseTime(rfc3339);
  EXPECT_TRUE(t.ok()) << rfc3339;
  return t.ok() ? *t : TimePoint{};
}

class ScheduleControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kube::testing::InitCurlOnce();
    server_ = kube::testing::StartServer();
    ASSERT_NE(server_, nullptr);
    kube::KubeConfig config;
    config.server = server_->url();
    client_ = kube::testing::MakeClient(config);
    ASSERT_NE(client_, nullptr);
  }
  void TearDown() override { controller_.reset(); }

  void StartController(ScheduleOptions options = {}) {
    options.sync_timeout = 20s;
    controller_ = std::make_unique<ScheduleController>(*client_, options, clock_);
    Status s = controller_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  kube::Object PutSchedule(const std::string& name, const std::string& cron,
                           kube::Object spec_extra = kube::Object::object(),
                           kube::Object status = kube::Object::object()) {
    kube::Object spec = {{"schedule", cron},
                         {"template",
                          {{"includedNamespaces", {"app"}},
                           {"defaultVolumesToFsBackup", true},
                           {"ttl", "720h0m0s"}}}};
    spec.update(spec_extra);
    kube::Object obj = {{"apiVersion", "velero.io/v1"},
                        {"kind", "Schedule"},
                        {"metadata", {{"name", name}, {"namespace", kNs}}},
                        {"spec", spec}};
    if (!status.empty()) obj["status"] = status;
    Result<kube::Object> stored = server_->Put(kube::kSchedules, obj);
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    return stored.ok() ? *stored : kube::Object();
  }

  std::vector<std::string> BackupNames() {
    std::vector<std::string> names;
    for (const auto& b : server_->List(kube::kBackups, kNs)) names.push_back(b["metadata"]["name"]);
    return names;
  }

  kube::Object WaitForBackup(const std::string& name) {
    Result<kube::Object> b = server_->WaitFor(
        kube::kBackups, kNs, name, [](const kube::Object* o) { return o != nullptr; }, kDeadline);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? *b : kube::Object();
  }

  kube::Object WaitForSchedule(const std::string& name,
                               const std::function<bool(const kube::Object&)>& pred) {
    Result<kube::Object> s = server_->WaitFor(
        kube::kSchedules, kNs, name, [&](const kube::Object* o) { return o && pred(*o); },
        kDeadline);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : kube::Object();
  }

  static bool LastBackupIs(const kube::Object& o, const std::string& t) {
    return o.contains("status") && o["status"].value("lastBackup", "") == t;
  }

  void SetBackupPhase(const std::string& name, const std::string& phase) {
    Result<kube::Object> b = server_->Get(kube::kBackups, kNs, name);
    ASSERT_TRUE(b.ok());
    (*b)["status"]["phase"] = phase;
    ASSERT_TRUE(server_->Put(kube::kBackups, *b).ok());
  }

  // The controller has looked at everything and is asleep (no other thread sleeps on clock_).
  void WaitUntilIdle() {
    ASSERT_TRUE(clock_.WaitForSleepers(1, kDeadline));
    // One more round trip through the watch: a pass started by an event ends in a sleep too.
    std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(clock_.WaitForSleepers(1, kDeadline));
  }

  FakeClock clock_{std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now())};
  std::unique_ptr<fsb::testing::KubeApiServer> server_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<ScheduleController> controller_;
};

TEST_F(ScheduleControllerTest, FiresTwiceWithAFastClockAndNotWhileTheFirstRuns) {
  const kube::Object created = PutSchedule("nightly", "*/5 * * * *");
  StartController();
  WaitForSchedule("nightly", [](const kube::Object& o) {
    return o.contains("status") && o["status"].value("phase", "") == "Enabled";
  });
  // Not due before the first activation after its creation.
  WaitUntilIdle();
  EXPECT_TRUE(BackupNames().empty());

  Result<CronSchedule> cron = CronSchedule::Parse("*/5 * * * *");
  ASSERT_TRUE(cron.ok());
  const TimePoint first =
      *cron->NextAfter(T(created["metadata"]["creationTimestamp"].get<std::string>()));
  clock_.Set(first);
  const auto stamp = [](TimePoint t) {
    std::string s = kube::FormatTime(t);  // 2026-11-26T10:05:00Z
    std::string out;
    for (char c : s) {
      if (c >= '0' && c <= '9') out += c;
    }
    return out;
  };
  const std::string b1 = "nightly-" + stamp(first);
  kube::Object backup = WaitForBackup(b1);
  EXPECT_EQ(backup["metadata"]["labels"]["velero.io/schedule-name"], "nightly");
  EXPECT_EQ(backup["metadata"]["labels"]["fsb.velero.io/coordinator"], "true");
  EXPECT_EQ(backup["spec"]["includedNamespaces"], kube::Object::array({"app"}));
  EXPECT_EQ(backup["spec"]["defaultVolumesToFsBackup"], true);
  EXPECT_FALSE(backup["metadata"].contains("ownerReferences"));
  WaitForSchedule("nightly",
                  [&](const kube::Object& o) { return LastBackupIs(o, kube::FormatTime(first)); });

  // The next activation comes while the first Backup is still New: no overlapping Backup.
  const TimePoint second = first + 5min;
  clock_.Set(second);
  WaitUntilIdle();
  EXPECT_THAT(BackupNames(), ElementsAre(b1));
  // It completes: the due run happens now.
  SetBackupPhase(b1, "Completed");
  const std::string b2 = "nightly-" + stamp(second);
  WaitForBackup(b2);
  WaitForSchedule("nightly",
                  [&](const kube::Object& o) { return LastBackupIs(o, kube::FormatTime(second)); });
  EXPECT_THAT(BackupNames(), ElementsAre(b1, b2));
}

TEST_F(ScheduleControllerTest, MissedRunsCaughtUpOnceAndNoDuplicateAfterRestart) {
  clock_.Set(T("2026-11-26T12:30:00Z"));
  PutSchedule("hourly", "0 * * * *", kube::Object::object(),
              {{"phase", "Enabled"}, {"lastBackup", "2026-11-26T09:00:00Z"}});
  StartController();
  // 10:00, 11:00 and 12:00 were missed: one Backup, for the latest.
  WaitForBackup("hourly-20261126120000");
  WaitForSchedule("hourly",
                  [](const kube::Object& o) { return LastBackupIs(o, "2026-11-26T12:00:00Z"); });
  WaitUntilIdle();
  EXPECT_THAT(BackupNames(), ElementsAre("hourly-20261126120000"));
  controller_.reset();

  // A crash after the Backup was created and before status.lastBackup was written.
  Result<kube::Object> s = server_->Get(kube::kSchedules, kNs, "hourly");
  ASSERT_TRUE(s.ok());
  (*s)["status"]["lastBackup"] = "2026-11-26T09:00:00Z";
  ASSERT_TRUE(server_->Put(kube::kSchedules, *s).ok());
  server_->ClearRequests();
  StartController();
  WaitForSchedule("hourly",
                  [](const kube::Object& o) { return LastBackupIs(o, "2026-11-26T12:00:00Z"); });
  WaitUntilIdle();
  EXPECT_THAT(BackupNames(), ElementsAre("hourly-20261126120000"));
  EXPECT_EQ(server_->CountRequests("POST", "/backups"), 0u);

  // Without the overlap check the Backup is created again: the API server answers
  // AlreadyExists, which counts as done.
  controller_.reset();
  ASSERT_TRUE(server_->Put(kube::kSchedules, *s).ok());
  ScheduleOptions o;
  o.skip_while_backup_running = false;
  server_->ClearRequests();
  StartController(o);
  WaitForSchedule("hourly",
                  [](const kube::Object& x) { return LastBackupIs(x, "2026-11-26T12:00:00Z"); });
  EXPECT_THAT(BackupNames(), ElementsAre("hourly-20261126120000"));

  // The next hour comes: one more.
  SetBackupPhase("hourly-20261126120000", "Completed");
  clock_.Set(T("2026-11-26T13:00:00Z"));
  WaitForBackup("hourly-20261126130000");
  WaitUntilIdle();
  EXPECT_THAT(BackupNames(), ElementsAre("hourly-20261126120000", "hourly-20261126130000"));
}

TEST_F(ScheduleControllerTest, PausedScheduleMakesNoBackup) {
  clock_.Set(T("2026-11-26T12:30:00Z"));
  PutSchedule("paused", "@every 1h", {{"paused", true}},
              {{"phase", "Enabled"}, {"lastBackup", "2026-11-26T09:00:00Z"}});
  StartController();
  WaitUntilIdle();
  clock_.Advance(24h);
  WaitUntilIdle();
  EXPECT_TRUE(BackupNames().empty());
  // Unpaused: the missed run happens once.
  Result<kube::Object> s = server_->Get(kube::kSchedules, kNs, "paused");
  ASSERT_TRUE(s.ok());
  (*s)["spec"]["paused"] = false;
  ASSERT_TRUE(server_->Put(kube::kSchedules, *s).ok());
  // @every 1h from 09:00: the latest activation before 12:30 the next day is 12:00.
  WaitForBackup("paused-20261127120000");
}

TEST_F(ScheduleControllerTest, SkipImmediatelySkipsTheDueRunOnce) {
  clock_.Set(T("2026-11-26T12:30:00Z"));
  PutSchedule("skip", "0 * * * *", {{"skipImmediately", true}},
              {{"phase", "Enabled"}, {"lastBackup", "2026-11-26T09:00:00Z"}});
  StartController();
  kube::Object s = WaitForSchedule("skip", [](const kube::Object& o) {
    return o["spec"].value("skipImmediately", true) == false;
  });
  EXPECT_EQ(s["status"]["lastSkipped"], "2026-11-26T12:30:00Z");
  WaitUntilIdle();
  EXPECT_TRUE(BackupNames().empty());
  clock_.Set(T("2026-11-26T13:00:00Z"));
  WaitForBackup("skip-20261126130000");
}

TEST_F(ScheduleControllerTest, InvalidCronFailsValidationAndAFixEnablesIt) {
  PutSchedule("bad", "* * * *");
  PutSchedule("empty", "");
  PutSchedule("zone", "CRON_TZ=Europe/Paris 0 1 * * *");
  StartController();
  kube::Object bad = WaitForSchedule("bad", [](const kube::Object& o) {
    return o.contains("status") && o["status"].value("phase", "") == "FailedValidation";
  });
  EXPECT_EQ(
      bad["status"]["validationErrors"],
      kube::Object::array({"invalid schedule: expected exactly 5 fields, found 4: [* * * *]"}));
  kube::Object empty = WaitForSchedule("empty", [](const kube::Object& o) {
    return o.contains("status") && o["status"].value("phase", "") == "FailedValidation";
  });
  EXPECT_EQ(empty["status"]["validationErrors"],
            kube::Object::array({"Schedule must be a non-empty valid Cron expression"}));
  kube::Object zone = WaitForSchedule("zone", [](const kube::Object& o) {
    return o.contains("status") && o["status"].value("phase", "") == "FailedValidation";
  });
  EXPECT_THAT(zone["status"]["validationErrors"][0].get<std::string>(),
              ::testing::HasSubstr("time zone Europe/Paris is not supported"));
  WaitUntilIdle();
  EXPECT_TRUE(BackupNames().empty());

  bad["spec"]["schedule"] = "0 3 * * *";
  ASSERT_TRUE(server_->Put(kube::kSchedules, bad).ok());
  kube::Object fixed = WaitForSchedule(
      "bad", [](const kube::Object& o) { return o["status"].value("phase", "") == "Enabled"; });
  EXPECT_FALSE(fixed["status"].contains("validationErrors"));
}

TEST_F(ScheduleControllerTest, BackupCarriesTemplateLabelsAnnotationsAndOwner) {
  clock_.Set(T("2026-11-26T12:30:00Z"));
  kube::Object spec = {{"useOwnerReferencesInBackup", true},
                       {"template",
                        {{"includedNamespaces", {"db"}},
                         {"storageLocation", "default"},
                         {"metadata", {{"labels", {{"team", "blue"}}}}}}}};
  kube::Object obj = {{"apiVersion", "velero.io/v1"},
                      {"kind", "Schedule"},
                      {"metadata",
                       {{"name", "owned"},
                        {"namespace", kNs},
                        {"labels", {{"ignored", "because-template-has-labels"}}},
                        {"annotations", {{"note", "from the schedule"}}}}},
                      {"spec", {{"schedule", "@daily"}}},
                      {"status", {{"lastBackup", "2026-11-25T00:00:00Z"}}}};
  obj["spec"].update(spec);
  Result<kube::Object> stored = server_->Put(kube::kSchedules, obj);
  ASSERT_TRUE(stored.ok());
  StartController();
  kube::Object b = WaitForBackup("owned-20261126000000");
  EXPECT_EQ(b["metadata"]["labels"], (kube::Object{{"team", "blue"},
                                                   {"velero.io/schedule-name", "owned"},
                                                   {"fsb.velero.io/coordinator", "true"}}));
  EXPECT_EQ(b["metadata"]["annotations"]["note"], "from the schedule");
  ASSERT_EQ(b["metadata"]["ownerReferences"].size(), 1u);
  EXPECT_EQ(b["metadata"]["ownerReferences"][0]["kind"], "Schedule");
  EXPECT_EQ(b["metadata"]["ownerReferences"][0]["name"], "owned");
  EXPECT_EQ(b["metadata"]["ownerReferences"][0]["uid"], (*stored)["metadata"]["uid"]);
  EXPECT_EQ(b["metadata"]["ownerReferences"][0]["controller"], true);
  EXPECT_EQ(b["spec"], spec["template"]);
}

}  // namespace
}  // namespace fsb::coordinator
