#include "coordinator/schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "base/log.h"
#include "coordinator/cron.h"
#include "kube/objects.h"

namespace fsb::coordinator {
namespace {

constexpr std::string_view kLastAppliedAnnotation =
    "kubectl.kubernetes.io/last-applied-configuration";

// The Schedule fields this controller reads (crds/velero.io_schedules.yaml), validated.
struct ScheduleView {
  kube::ObjectMeta meta;
  std::string schedule;
  bool paused = false;
  bool use_owner_references = false;
  std::optional<bool> skip_immediately;
  kube::Object template_spec = kube::Object::object();
  std::string phase;
  std::optional<TimePoint> last_backup, last_skipped, created;
  std::vector<std::string> validation_errors;
};

Result<std::optional<TimePoint>> OptionalTime(const kube::Object& parent, const char* key,
                                              std::string_view what) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return std::optional<TimePoint>();
  if (!it->is_string()) return Status::InvalidArgument(fmt::format("{}: not a string", what));
  Result<TimePoint> t = kube::ParseTime(it->get<std::string>());
  if (!t.ok()) return t.status().WithContext(what);
  return std::optional<TimePoint>(*t);
}

Result<ScheduleView> ParseScheduleView(const kube::Object& obj) {
  ScheduleView s;
  FSB_ASSIGN_OR_RETURN(s.meta, kube::ParseMeta(obj));
  const std::string who = "schedule " + s.meta.Key();
  if (s.meta.creation_timestamp) {
    Result<TimePoint> t = kube::ParseTime(*s.meta.creation_timestamp);
    if (!t.ok()) return t.status().WithContext(who + ": metadata.creationTimestamp");
    s.created = *t;
  }
  const kube::Object empty = kube::Object::object();
  const kube::Object& spec = obj.contains("spec") && obj["spec"].is_object() ? obj["spec"] : empty;
  auto get_bool = [&](const char* key, std::optional<bool>* out) -> Status {
    auto it = spec.find(key);
    if (it == spec.end() || it->is_null()) return Status::Ok();
    if (!it->is_boolean()) {
      return Status::InvalidArgument(fmt::format("{}: spec.{} is not a boolean", who, key));
    }
    *out = it->get<bool>();
    return Status::Ok();
  };
  if (auto it = spec.find("schedule"); it != spec.end() && !it->is_null()) {
    if (!it->is_string()) {
      return Status::InvalidArgument(fmt::format("{}: spec.schedule is not a string", who));
    }
    s.schedule = it->get<std::string>();
  }
  std::optional<bool> b;
  FSB_RETURN_IF_ERROR(get_bool("paused", &b));
  s.paused = b.value_or(false);
  b.reset();
  FSB_RETURN_IF_ERROR(get_bool("useOwnerReferencesInBackup", &b));
  s.use_owner_references = b.value_or(false);
  FSB_RETURN_IF_ERROR(get_bool("skipImmediately", &s.skip_immediately));
  if (auto it = spec.find("template"); it != spec.end() && !it->is_null()) {
    if (!it->is_object()) {
      return Status::InvalidArgument(fmt::format("{}: spec.template is not an object", who));
    }
    s.template_spec = *it;
  }
  const kube::Object& status =
      obj.contains("status") && obj["status"].is_object() ? obj["status"] : empty;
  if (auto it = status.find("phase"); it != status.end() && it->is_string()) {
    s.phase = it->get<std::string>();
  }
  FSB_ASSIGN_OR_RETURN(s.last_backup,
                       OptionalTime(status, "lastBackup", who + ": status.lastBackup"));
  FSB_ASSIGN_OR_RETURN(s.last_skipped,
                       OptionalTime(status, "lastSkipped", who + ": status.lastSkipped"));
  if (auto it = status.find("validationErrors"); it != status.end() && it->is_array()) {
    for (const auto& e : *it) {
      if (e.is_string()) s.validation_errors.push_back(e.get<std::string>());
    }
  }
  return s;
}

// Velero's Schedule.TimestampedName: "<name>-" + Go's "20060102150405" in UTC.
std::string TimestampedName(const std::string& name, TimePoint t) {
  const auto secs = std::chrono::floor<std::chrono::seconds>(t);
  const auto day = std::chrono::floor<std::chrono::days>(secs);
  const std::chrono::year_month_day ymd(day);
  const std::chrono::hh_mm_ss hms(secs - day);
  return fmt::format("{}-{:04}{:02}{:02}{:02}{:02}{:02}", name, static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count());
}

// Velero's BackupBuilder.FromSchedule: spec = template; labels = template.metadata.labels, else
// the Schedule's labels, plus velero.io/schedule-name; the Schedule's annotations; a controller
// owner reference when useOwnerReferencesInBackup.
kube::Object BackupFromSchedule(const ScheduleView& s, const std::string& name,
                                const std::map<std::string, std::string>& extra_labels) {
  kube::Object labels = kube::Object::object();
  bool template_labels = false;
  if (auto md = s.template_spec.find("metadata"); md != s.template_spec.end() && md->is_object()) {
    if (auto l = md->find("labels"); l != md->end() && l->is_object() && !l->empty()) {
      labels = *l;
      template_labels = true;
    }
  }
  if (!template_labels) {
    for (const auto& [k, v] : s.meta.labels) labels[k] = v;
  }
  labels[std::string(kLabelScheduleName)] = s.meta.name;
  for (const auto& [k, v] : extra_labels) labels[k] = v;
  kube::Object metadata = {{"name", name}, {"namespace", s.meta.ns}, {"labels", labels}};
  kube::Object annotations = kube::Object::object();
  for (const auto& [k, v] : s.meta.annotations) {
    if (k != kLastAppliedAnnotation) annotations[k] = v;
  }
  if (!annotations.empty()) metadata["annotations"] = annotations;
  if (s.use_owner_references) {
    metadata["ownerReferences"] = kube::Object::array({{{"apiVersion", "velero.io/v1"},
                                                        {"kind", "Schedule"},
                                                        {"name", s.meta.name},
                                                        {"uid", s.meta.uid},
                                                        {"controller", true}}});
  }
  return {{"apiVersion", "velero.io/v1"},
          {"kind", "Backup"},
          {"metadata", std::move(metadata)},
          {"spec", s.template_spec}};
}

}  // namespace

ScheduleController::ScheduleController(kube::Client& client, ScheduleOptions options,
                                       const Clock& clock)
    : client_(client), options_(std::move(options)), clock_(clock) {}

ScheduleController::~ScheduleController() { Stop(); }

Status ScheduleController::Start() {
  if (started_) return Status::Ok();
  kube::InformerOptions so;
  so.ns = options_.ns;
  so.resync = options_.resync;
  schedules_ = std::make_unique<kube::Informer>(
      client_, kube::kSchedules, so, [this](kube::EventType, const kube::Object&) { Wake(); });
  kube::InformerOptions bo = so;
  bo.list.label_selector = std::string(kLabelScheduleName);
  backups_ = std::make_unique<kube::Informer>(
      client_, kube::kBackups, bo, [this](kube::EventType, const kube::Object&) { Wake(); });
  schedules_->Start();
  backups_->Start();
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options_.sync_timeout);
  if (!schedules_->WaitForSync(timeout) || !backups_->WaitForSync(timeout)) {
    Status why = !schedules_->last_error().ok() ? schedules_->last_error() : backups_->last_error();
    Stop();
    return Status::Unavailable(
        fmt::format("schedule controller: no list of schedules and "
                    "backups within {}s: {}",
                    options_.sync_timeout.count(), why.ToString()));
  }
  started_ = true;
  thread_ = std::jthread([this](std::stop_token st) { Run(st); });
  return Status::Ok();
}

void ScheduleController::Stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  if (schedules_) schedules_->Stop();
  if (backups_) backups_->Stop();
  started_ = false;
}

void ScheduleController::Wake() {
  std::lock_guard lock(mu_);
  wake_.request_stop();
}

void ScheduleController::Run(std::stop_token stop) {
  auto log = GetLogger("coordinator");
  log->info("schedule controller started ns={}", options_.ns);
  while (!stop.stop_requested()) {
    std::stop_token woken;
    {
      std::lock_guard lock(mu_);
      wake_ = std::stop_source();
      woken = wake_.get_token();
    }
    const TimePoint now = clock_.Now();
    std::optional<TimePoint> next;
    for (const kube::Object& obj : schedules_->List()) {
      if (stop.stop_requested()) break;
      std::optional<TimePoint> t = Reconcile(obj, now);
      if (t && (!next || *t < *next)) next = t;
    }
    std::stop_source either;
    std::stop_callback on_stop(stop, [&either] { either.request_stop(); });
    std::stop_callback on_wake(woken, [&either] { either.request_stop(); });
    if (next) {
      log->debug("schedule controller sleeping until={}", kube::FormatTime(*next));
    }
    clock_.SleepUntil(next.value_or(TimePoint::max()), either.get_token());
  }
  log->info("schedule controller stopped ns={}", options_.ns);
}

bool ScheduleController::HasRunningBackup(const std::string& schedule) const {
  for (const kube::Object& b : backups_->List()) {
    Result<kube::ObjectMeta> meta = kube::ParseMeta(b);
    if (!meta.ok()) continue;
    auto it = meta->labels.find(std::string(kLabelScheduleName));
    if (it == meta->labels.end() || it->second != schedule) continue;
    std::string phase;
    if (b.contains("status") && b["status"].is_object()) {
      phase = b["status"].value("phase", std::string());
    }
    if (phase.empty() || phase == "New" || phase == "InProgress") return true;
  }
  return false;
}

std::optional<TimePoint> ScheduleController::Reconcile(const kube::Object& obj, TimePoint now) {
  auto log = GetLogger("coordinator");
  Result<ScheduleView> parsed = ParseScheduleView(obj);
  std::vector<std::string> errors;
  std::optional<CronSchedule> cron;
  ScheduleView s;
  if (!parsed.ok()) {
    Result<kube::ObjectMeta> meta = kube::ParseMeta(obj);
    if (!meta.ok()) {
      log->warn("malformed schedule err=\"{}\"", meta.status().ToString());
      return std::nullopt;
    }
    s.meta = std::move(*meta);
    if (obj.contains("status") && obj["status"].is_object()) {
      s.phase = obj["status"].value("phase", std::string());
    }
    errors.push_back(parsed.status().message());
  } else {
    s = std::move(*parsed);
  }
  if (s.meta.deletion_timestamp) return std::nullopt;
  const std::string key = s.meta.Key();
  const std::string name = s.meta.name;

  // Validation (Velero's parseCronSchedule and its messages).
  if (errors.empty()) {
    if (s.schedule.empty()) {
      errors.push_back("Schedule must be a non-empty valid Cron expression");
    } else {
      Result<CronSchedule> c = CronSchedule::Parse(s.schedule);
      if (c.ok()) {
        cron = std::move(*c);
      } else {
        errors.push_back("invalid schedule: " + c.status().message());
      }
    }
  }
  if (!errors.empty()) {
    if (s.phase != kSchedulePhaseFailedValidation || s.validation_errors != errors) {
      kube::Object patch = {
          {"status", {{"phase", kSchedulePhaseFailedValidation}, {"validationErrors", errors}}}};
      Result<kube::Object> r = client_.MergePatch(kube::kSchedules, s.meta.ns, name, patch);
      if (!r.ok()) {
        log->warn("schedule status patch failed schedule={} err=\"{}\"", key,
                  r.status().ToString());
        return now + options_.retry_after;
      }
      log->info("schedule failed validation schedule={} err=\"{}\"", key, errors.front());
    }
    return std::nullopt;
  }
  if (s.phase != kSchedulePhaseEnabled || !s.validation_errors.empty()) {
    kube::Object patch = {
        {"status", {{"phase", kSchedulePhaseEnabled}, {"validationErrors", nullptr}}}};
    Result<kube::Object> r = client_.MergePatch(kube::kSchedules, s.meta.ns, name, patch);
    if (!r.ok()) {
      log->warn("schedule status patch failed schedule={} err=\"{}\"", key, r.status().ToString());
      return now + options_.retry_after;
    }
    log->info("schedule enabled schedule={} cron=\"{}\"", key, s.schedule);
  }
  if (s.paused) return std::nullopt;

  // skipImmediately (Velero ≥ 1.13): consumed once, recorded as status.lastSkipped.
  if (s.skip_immediately.value_or(options_.skip_immediately)) {
    const TimePoint skipped = std::chrono::floor<std::chrono::seconds>(now);
    kube::Object patch = {{"spec", {{"skipImmediately", false}}},
                          {"status", {{"lastSkipped", kube::FormatTime(skipped)}}}};
    Result<kube::Object> r = client_.MergePatch(kube::kSchedules, s.meta.ns, name, patch);
    if (!r.ok()) {
      log->warn("schedule patch failed schedule={} err=\"{}\"", key, r.status().ToString());
      return now + options_.retry_after;
    }
    log->info("schedule skipping the immediate run schedule={}", key);
    s.last_skipped = skipped;
  }

  // When it is due (Velero's getNextRunTime).
  TimePoint base = s.last_backup.value_or(s.created.value_or(now));
  if (s.last_skipped && *s.last_skipped > base) base = *s.last_skipped;
  if (auto f = fired_.find(key); f != fired_.end() && f->second > base) base = f->second;
  const std::optional<TimePoint> slot = cron->LatestDue(base, now);
  if (!slot) {
    std::optional<TimePoint> next = cron->NextAfter(base);
    if (!next) log->warn("schedule never fires schedule={} cron=\"{}\"", key, s.schedule);
    return next;
  }
  const std::string backup_name = TimestampedName(name, *slot);
  const bool exists = backups_->Get(s.meta.ns, backup_name).has_value();
  if (!exists && options_.skip_while_backup_running && HasRunningBackup(name)) {
    log->info("schedule due but a backup of it is still running schedule={}", key);
    return std::nullopt;  // the Backup informer wakes us when it changes
  }

  Result<kube::Object> created =
      exists ? Result<kube::Object>(Status::AlreadyExists(backup_name))
             : client_.Create(kube::kBackups, s.meta.ns,
                              BackupFromSchedule(s, backup_name, options_.backup_labels));
  if (created.ok()) {
    log->info("schedule created backup schedule={} backup={} due={}", key, backup_name,
              kube::FormatTime(*slot));
  } else if (created.status().code() == StatusCode::kAlreadyExists) {
    // Made before a restart (or a crash before status.lastBackup was written): already done.
    log->info("schedule backup already exists schedule={} backup={}", key, backup_name);
  } else {
    log->warn("schedule backup create failed schedule={} backup={} err=\"{}\"", key, backup_name,
              created.status().ToString());
    return now + options_.retry_after;
  }
  fired_[key] = *slot;
  kube::Object patch = {{"status", {{"lastBackup", kube::FormatTime(*slot)}}}};
  Result<kube::Object> r = client_.MergePatch(kube::kSchedules, s.meta.ns, name, patch);
  if (!r.ok()) {
    // The next pass (or a restart) finds the Backup by name; nothing is lost.
    log->warn("schedule lastBackup patch failed schedule={} err=\"{}\"", key,
              r.status().ToString());
    return now + options_.retry_after;
  }
  return cron->NextAfter(*slot);
}

}  // namespace fsb::coordinator
