#include "coordinator/backup_controller.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "base/log.h"
#include "coordinator/common.h"
#include "coordinator/records.h"

namespace fsb::coordinator {
namespace velero = kube::velero;
namespace {

constexpr std::string_view kPhasePartiallyFailed = "PartiallyFailed";
constexpr std::string_view kLabelVolumeNamespace = "velero.io/volume-namespace";
constexpr std::string_view kLabelStorageLocation = "velero.io/storage-location";
constexpr std::string_view kLabelRepositoryType = "velero.io/repository-type";


std::chrono::milliseconds Timeout(const velero::Backup& b, std::chrono::milliseconds fallback) {
  auto it = b.meta.annotations.find(std::string(kAnnotationPodVolumeTimeout));
  if (it == b.meta.annotations.end()) return fallback;
  Result<std::chrono::milliseconds> d = velero::ParseGoDuration(it->second);
  return d.ok() ? *d : fallback;
}

// Whatever a stored copy should not carry.
kube::Object ForRecord(kube::Object obj) {
  if (obj.contains("metadata") && obj["metadata"].is_object()) {
    obj["metadata"].erase("managedFields");
  }
  return obj;
}

}  // namespace

std::vector<std::string> ValidateBackupSpec(const velero::Backup& b) {
  std::vector<std::string> errs = ValidateFilters(b.included_namespaces, b.excluded_namespaces,
                                                  b.label_selector, b.or_label_selectors);
  if (!b.ttl.empty()) {
    if (Result<std::chrono::milliseconds> d = velero::ParseGoDuration(b.ttl); !d.ok()) {
      errs.push_back("invalid spec.ttl: " + std::string(d.status().message()));
    }
  }
  auto it = b.meta.annotations.find(std::string(kAnnotationPodVolumeTimeout));
  if (it != b.meta.annotations.end()) {
    if (Result<std::chrono::milliseconds> d = velero::ParseGoDuration(it->second); !d.ok()) {
      errs.push_back(fmt::format("invalid annotation {}: {}", kAnnotationPodVolumeTimeout,
                                 d.status().message()));
    }
  }
  return errs;
}

kube::Object BuildPodVolumeBackup(const velero::Backup& backup, const kube::Pod& pod,
                                  const SelectedVolume& volume, std::string_view bsl,
                                  std::string_view repo_identifier, std::string_view ns) {
  kube::Object labels = {{std::string(velero::kLabelBackupName), ValidLabelValue(backup.meta.name)},
                         {std::string(velero::kLabelBackupUid), backup.meta.uid}};
  kube::Object tags = {{"backup", backup.meta.name}, {"backup-uid", backup.meta.uid},
                       {"pod", pod.meta.name},       {"pod-uid", pod.meta.uid},
                       {"ns", pod.meta.ns},          {"volume", volume.name}};
  kube::Object metadata = {{"generateName", backup.meta.name + "-"},
                           {"namespace", std::string(ns)},
                           {"ownerReferences",
                            {{{"apiVersion", std::string(velero::kApiVersion)},
                              {"kind", "Backup"},
                              {"name", backup.meta.name},
                              {"uid", backup.meta.uid},
                              {"controller", true}}}}};
  if (!volume.claim_name.empty()) {
    if (!volume.claim_uid.empty()) {
      labels[std::string(velero::kLabelPvcUid)] = volume.claim_uid;
      tags["pvc-uid"] = volume.claim_uid;
    }
    metadata["annotations"] = {{std::string(velero::kAnnotationPvcName), volume.claim_name}};
  }
  metadata["labels"] = labels;
  kube::ObjectReference ref;
  ref.kind = "Pod";
  ref.ns = pod.meta.ns;
  ref.name = pod.meta.name;
  ref.uid = pod.meta.uid;
  kube::Object spec = {{"node", pod.node_name},
                       {"pod", kube::ToJson(ref)},
                       {"volume", volume.name},
                       {"backupStorageLocation", std::string(bsl)},
                       {"repoIdentifier", std::string(repo_identifier)},
                       {"uploaderType", "restic"},
                       {"tags", tags}};
  if (backup.has_uploader_config) {
    spec["uploaderSettings"] = {
        {"ParallelFilesUpload", std::to_string(backup.parallel_files_upload)}};
  }
  return {{"apiVersion", std::string(velero::kApiVersion)},
          {"kind", "PodVolumeBackup"},
          {"metadata", metadata},
          {"spec", spec}};
}

BackupController::BackupController(kube::Client& client, StorageLocations& storage,
                                   BackupControllerOptions options)
    : client_(client), storage_(storage), options_(std::move(options)) {}

Status BackupController::Reconcile(std::string_view name) {
  Result<kube::Object> obj = client_.Get(kube::kBackups, options_.ns, name);
  if (!obj.ok()) {
    if (obj.status().code() == StatusCode::kNotFound) return Status::Ok();  // deleted
    return obj.status();
  }
  Result<kube::ObjectMeta> meta = kube::ParseMeta(*obj);
  if (!meta.ok()) return Status::Ok();  // not an object we can even name
  if (!ClaimedByFsb(*meta, options_.claim_all)) return Status::Ok();
  if (meta->deletion_timestamp) return Status::Ok();
  const std::string phase = PhaseOf(*obj);
  if (phase.empty() || phase == velero::kPhaseNew) return Start(*obj);
  if (phase == velero::kPhaseInProgress && HandledByFsb(*meta)) return Continue(*obj);
  return Status::Ok();  // final, or someone else's
}

Result<velero::BackupStorageLocation> BackupController::ResolveBsl(const velero::Backup& b) {
  if (!b.storage_location.empty()) return storage_.Get(b.storage_location);
  FSB_ASSIGN_OR_RETURN(kube::ObjectList all,
                       client_.List(kube::kBackupStorageLocations, options_.ns));
  for (const kube::Object& o : all.items) {
    if (o.contains("spec") && o["spec"].is_object() && o["spec"].value("default", false)) {
      return velero::ParseBackupStorageLocation(o);
    }
  }
  return storage_.Get(options_.default_bsl);
}

Status BackupController::Start(const kube::Object& obj) {
  auto log = GetLogger("coordinator");
  Result<velero::Backup> parsed = velero::ParseBackup(obj);
  std::vector<std::string> errs;
  std::string bsl_name;
  std::chrono::milliseconds ttl = options_.default_ttl;
  if (!parsed.ok()) {
    errs.push_back(std::string(parsed.status().message()));
  } else {
    errs = ValidateBackupSpec(*parsed);
    if (!parsed->ttl.empty()) {
      if (auto d = velero::ParseGoDuration(parsed->ttl); d.ok()) ttl = *d;
    }
    Result<velero::BackupStorageLocation> bsl = ResolveBsl(*parsed);
    if (!bsl.ok()) {
      if (bsl.status().code() != StatusCode::kNotFound) return bsl.status();  // transient
      if (parsed->storage_location.empty()) {
        errs.push_back(fmt::format(
            "an existing backup storage location wasn't specified at backup creation time and "
            "the default '{}' wasn't found. Please address this issue (see `velero backup-location "
            "-h` for options) and create a new backup. Error: {}",
            options_.default_bsl, bsl.status().message()));
      } else {
        errs.push_back(fmt::format(
            "a BackupStorageLocation CRD with the name specified in the backup spec needs to be "
            "created before this backup can be executed. Error: {}",
            bsl.status().message()));
      }
    } else {
      bsl_name = bsl->meta.name;
      if (bsl->access_mode == "ReadOnly") {
        errs.push_back(fmt::format(
            "backup can't be created because backup storage location {} is currently in "
            "read-only mode",
            bsl_name));
      }
      if (Result<std::string> loc = RecordsLocation(*bsl); !loc.ok()) {
        errs.push_back(std::string(loc.status().message()));
      }
    }
  }
  const std::string name = obj["metadata"].value("name", "");
  kube::Object next = ClaimedCopy(obj, errs);
  kube::Object& st = next["status"];
  if (!errs.empty()) {
    log->error("backup failed validation backup={} errors=\"{}\"", name, fmt::join(errs, "; "));
  } else {
    const auto start = kube::Clock::now();
    st["phase"] = velero::kPhaseInProgress;
    st["startTimestamp"] = kube::FormatTime(start);
    st["expiration"] =
        kube::FormatTime(start + std::chrono::duration_cast<kube::Clock::duration>(ttl));
    st["version"] = 1;
    st["formatVersion"] = "1.1.0";
    next["spec"]["storageLocation"] = bsl_name;
    next["metadata"]["labels"][std::string(kLabelStorageLocation)] = ValidLabelValue(bsl_name);
    log->info("backup started backup={} bsl={}", name, bsl_name);
  }
  // A PUT with the resourceVersion read: if a Velero server (or another coordinator) changed the
  // Backup meanwhile, this fails with a conflict and the next Reconcile sees its phase.
  FSB_ASSIGN_OR_RETURN(kube::Object stored,
                       PutClaimed(client_, kube::kBackups, options_.ns, next, "backup"));
  if (!errs.empty()) return Status::Ok();
  return Continue(stored);
}

Status BackupController::Continue(const kube::Object& obj) {
  Result<velero::Backup> parsed = velero::ParseBackup(obj);
  if (!parsed.ok())
    return Finish(obj, velero::Backup{}, nullptr, false, std::string(parsed.status().message()));
  const velero::Backup& b = *parsed;
  Result<velero::BackupStorageLocation> bsl = storage_.Get(b.storage_location);
  if (!bsl.ok()) {
    if (bsl.status().code() != StatusCode::kNotFound) return bsl.status();
    return Finish(obj, b, nullptr, false,
                  fmt::format("backup storage location {} not found: {}", b.storage_location,
                              bsl.status().message()));
  }
  Result<std::unique_ptr<repo::ObjectStore>> store = storage_.OpenStore(*bsl);
  if (!store.ok()) return Finish(obj, b, nullptr, false, std::string(store.status().message()));

  if (b.meta.annotations.count(std::string(kAnnotationPvbsCreated)) == 0) {
    return Plan(obj, b, *bsl, **store);
  }
  // Waiting: every PVB final?
  kube::ListOptions lo;
  lo.label_selector = fmt::format("{}={}", velero::kLabelBackupUid, b.meta.uid);
  FSB_ASSIGN_OR_RETURN(kube::ObjectList pvbs,
                       client_.List(kube::kPodVolumeBackups, options_.ns, lo));
  int64_t done = 0;
  for (const kube::Object& p : pvbs.items) done += velero::IsFinalPhase(PhaseOf(p)) ? 1 : 0;
  if (done == static_cast<int64_t>(pvbs.items.size())) {
    return Finish(obj, b, store->get(), false, "");
  }
  const std::chrono::milliseconds timeout = Timeout(b, options_.fs_backup_timeout);
  if (b.start_timestamp) {
    if (Result<kube::Clock::time_point> start = kube::ParseTime(*b.start_timestamp);
        start.ok() && kube::Clock::now() > *start + timeout) {
      return Finish(obj, b, store->get(), true, "");
    }
  }
  // Progress: PVBs done of PVBs.
  const kube::Object& st = obj.contains("status") ? obj["status"] : kube::Object();
  const int64_t shown = st.is_object() && st.contains("progress") && st["progress"].is_object()
                            ? st["progress"].value("itemsBackedUp", int64_t{-1})
                            : -1;
  if (shown != done) {
    Result<kube::Object> r = kube::UpdateWithRetry(
        client_, kube::kBackups, options_.ns, b.meta.name, [&](kube::Object& o) {
          if (PhaseOf(o) != velero::kPhaseInProgress) return Status::Cancelled("phase changed");
          o["status"]["progress"] = {{"totalItems", static_cast<int64_t>(pvbs.items.size())},
                                     {"itemsBackedUp", done}};
          return Status::Ok();
        });
    if (!r.ok() && r.status().code() != StatusCode::kCancelled) return r.status();
  }
  return Status::Ok();
}

Status BackupController::EnsureBackupRepository(std::string_view volume_ns,
                                                const velero::BackupStorageLocation& bsl) {
  kube::ListOptions lo;
  lo.label_selector =
      fmt::format("{}={},{}={},{}=restic", kLabelVolumeNamespace, ValidLabelValue(volume_ns),
                  kLabelStorageLocation, ValidLabelValue(bsl.meta.name), kLabelRepositoryType);
  FSB_ASSIGN_OR_RETURN(kube::ObjectList found,
                       client_.List(kube::kBackupRepositories, options_.ns, lo));
  if (!found.items.empty()) return Status::Ok();
  FSB_ASSIGN_OR_RETURN(std::string identifier, velero::RepoIdentifier(bsl, volume_ns));
  const std::string name = fmt::format("{}-{}-restic", volume_ns, bsl.meta.name);
  kube::Object br = {{"apiVersion", std::string(velero::kApiVersion)},
                     {"kind", "BackupRepository"},
                     {"metadata",
                      {{"name", name},
                       {"namespace", options_.ns},
                       {"labels",
                        {{std::string(kLabelVolumeNamespace), ValidLabelValue(volume_ns)},
                         {std::string(kLabelStorageLocation), ValidLabelValue(bsl.meta.name)},
                         {std::string(kLabelRepositoryType), "restic"}}}}},
                     {"spec",
                      {{"volumeNamespace", std::string(volume_ns)},
                       {"backupStorageLocation", bsl.meta.name},
                       {"repositoryType", "restic"},
                       {"resticIdentifier", identifier},
                       {"maintenanceFrequency", "168h0m0s"}}},
                     {"status", {{"phase", "New"}}}};
  Result<kube::Object> created = client_.Create(kube::kBackupRepositories, options_.ns, br);
  if (!created.ok() && created.status().code() != StatusCode::kAlreadyExists) {
    return created.status().WithContext("create BackupRepository " + name);
  }
  GetLogger("coordinator")
      ->info("backup repository ensured name={} ns={} repo={}", name, volume_ns, identifier);
  return Status::Ok();
}

Status BackupController::Plan(const kube::Object& obj, const velero::Backup& b,
                              const velero::BackupStorageLocation& bsl, repo::ObjectStore& store) {
  auto log = GetLogger("coordinator");
  kube::ListOptions by_uid;
  by_uid.label_selector = fmt::format("{}={}", velero::kLabelBackupUid, b.meta.uid);
  FSB_ASSIGN_OR_RETURN(kube::ObjectList existing,
                       client_.List(kube::kPodVolumeBackups, options_.ns, by_uid));
  std::set<std::pair<std::string, std::string>> have;  // (pod uid, volume)
  for (const kube::Object& o : existing.items) {
    Result<velero::PodVolumeBackup> p = velero::ParsePodVolumeBackup(o);
    if (p.ok()) have.emplace(p->pod.uid, p->volume);
  }
  FSB_ASSIGN_OR_RETURN(kube::ObjectList pods, client_.List(kube::kPods, ""));
  FSB_ASSIGN_OR_RETURN(kube::ObjectList pvcs, client_.List(kube::kPersistentVolumeClaims, ""));
  FSB_ASSIGN_OR_RETURN(kube::ObjectList pvs, client_.List(kube::kPersistentVolumes, ""));
  kube::ListOptions agents_lo;
  agents_lo.label_selector = std::string(kNodeAgentSelector);
  FSB_ASSIGN_OR_RETURN(kube::ObjectList agents, client_.List(kube::kPods, options_.ns, agents_lo));
  std::set<std::string> agent_nodes;
  for (const kube::Object& o : agents.items) {
    Result<kube::Pod> p = kube::ParsePod(o);
    if (p.ok() && p->phase == "Running" && !p->meta.deletion_timestamp && !p->node_name.empty()) {
      agent_nodes.insert(p->node_name);
    }
  }
  std::set<std::string> host_path_pvs;
  for (const kube::Object& o : pvs.items) {
    Result<kube::PersistentVolume> pv = kube::ParsePersistentVolume(o);
    if (pv.ok() && !pv->host_path.empty()) host_path_pvs.insert(pv->meta.name);
  }
  std::map<std::string, std::map<std::string, ClaimInfo>> claims;  // ns → name → info
  std::map<std::string, const kube::Object*> claim_objs;           // "ns/name" → manifest
  for (const kube::Object& o : pvcs.items) {
    Result<kube::PersistentVolumeClaim> c = kube::ParsePersistentVolumeClaim(o);
    if (!c.ok()) continue;
    ClaimInfo ci;
    ci.uid = c->meta.uid;
    ci.labels = c->meta.labels;
    ci.pv_is_host_path = host_path_pvs.count(c->volume_name) > 0;
    claims[c->meta.ns][c->meta.name] = ci;
    claim_objs[c->meta.Key()] = &o;
  }

  const bool pods_included = ResourceIncluded("pods", b.included_resources, b.excluded_resources);
  VolumeSelectionOptions vopts;
  vopts.default_volumes_to_fs_backup =
      EffectiveDefaultVolumesToFsBackup(b, options_.default_volumes_to_fs_backup);
  vopts.pvcs_included =
      ResourceIncluded("persistentvolumeclaims", b.included_resources, b.excluded_resources);

  std::vector<const kube::Object*> sorted;
  for (const kube::Object& o : pods.items) sorted.push_back(&o);
  std::sort(sorted.begin(), sorted.end(), [](const kube::Object* x, const kube::Object* y) {
    return std::pair(x->at("metadata").value("namespace", ""),
                     x->at("metadata").value("name", "")) <
           std::pair(y->at("metadata").value("namespace", ""), y->at("metadata").value("name", ""));
  });

  std::vector<std::string> skipped, warnings, errors;
  std::set<std::string> claims_done;
  std::set<std::string> namespaces;
  std::vector<kube::Object> to_create;
  std::vector<kube::Object> resources;
  std::set<std::string> resource_keys;
  for (const kube::Object* po : pods_included ? sorted : std::vector<const kube::Object*>{}) {
    Result<kube::Pod> parsed = kube::ParsePod(*po);
    if (!parsed.ok()) {
      warnings.push_back(std::string(parsed.status().message()));
      continue;
    }
    const kube::Pod& pod = *parsed;
    if (!NamespaceIncluded(pod.meta.ns, b.included_namespaces, b.excluded_namespaces)) continue;
    auto ex = pod.meta.labels.find(std::string(kLabelExcludeFromBackup));
    if (ex != pod.meta.labels.end() && ex->second == "true") continue;
    if (!LabelsSelected(pod.meta.labels, b.label_selector, b.or_label_selectors)) continue;
    VolumeSelection sel = SelectPodVolumes(pod, claims[pod.meta.ns], vopts);
    for (const SkippedVolume& s : sel.skipped) {
      const std::string line = fmt::format("{}/{}: {}", pod.meta.Key(), s.name, s.reason);
      skipped.push_back(line);
      if (s.warning) warnings.push_back(line);
    }
    if (sel.selected.empty()) continue;
    // §8.2: not running is a silent skip; no node agent on its node is an error.
    if (pod.node_name.empty() || pod.phase != "Running" || pod.meta.deletion_timestamp) {
      skipped.push_back(
          fmt::format("{}: pod is not running, its volumes are not backed up", pod.meta.Key()));
      continue;
    }
    if (agent_nodes.count(pod.node_name) == 0) {
      errors.push_back(fmt::format("node-agent pod is not running in node {} (pod {})",
                                   pod.node_name, pod.meta.Key()));
      continue;
    }
    bool any = false;
    for (const SelectedVolume& v : sel.selected) {
      if (!v.claim_name.empty()) {
        const std::string key =
            v.claim_uid.empty() ? pod.meta.ns + "/" + v.claim_name : v.claim_uid;
        if (!claims_done.insert(key).second) {
          skipped.push_back(fmt::format(
              "{}/{}: persistentvolumeclaim {}/{} is already backed up from another pod",
              pod.meta.Key(), v.name, pod.meta.ns, v.claim_name));
          continue;
        }
      }
      any = true;
      namespaces.insert(pod.meta.ns);
      if (have.count({pod.meta.uid, v.name})) continue;  // created before a restart
      Result<std::string> ident = velero::RepoIdentifier(bsl, pod.meta.ns);
      to_create.push_back(BuildPodVolumeBackup(b, pod, v, bsl.meta.name,
                                               ident.ok() ? *ident : std::string(), options_.ns));
    }
    if (!any) continue;
    if (resource_keys.insert("pod/" + pod.meta.Key()).second) resources.push_back(ForRecord(*po));
    for (const kube::PodVolume& v : pod.volumes) {
      if (v.claim_name.empty()) continue;
      auto it = claim_objs.find(pod.meta.ns + "/" + v.claim_name);
      if (it != claim_objs.end() && resource_keys.insert("pvc/" + it->first).second) {
        resources.push_back(ForRecord(*it->second));
      }
    }
  }

  for (const std::string& ns : namespaces) FSB_RETURN_IF_ERROR(EnsureBackupRepository(ns, bsl));
  if (Status s = WriteResourcesRecord(store, b.meta.name, resources); !s.ok()) {
    if (s.code() == StatusCode::kUnavailable) return s;  // retry later
    return Finish(obj, b, nullptr, false,
                  fmt::format("write backup records to {}: {}", store.Location(), s.message()));
  }
  for (const kube::Object& pvb : to_create) {
    Result<kube::Object> created = client_.Create(kube::kPodVolumeBackups, options_.ns, pvb);
    if (!created.ok()) return created.status().WithContext("create podvolumebackup");
    log->info("pvb created pvb={}/{} backup={} ns={} pod={} volume={}", options_.ns,
              (*created)["metadata"].value("name", ""), b.meta.name,
              pvb["spec"]["pod"].value("namespace", ""), pvb["spec"]["pod"].value("name", ""),
              pvb["spec"].value("volume", ""));
  }
  for (const std::string& e : errors) {
    log->error("backup error backup={} err=\"{}\"", b.meta.name, e);
  }
  const int64_t total = static_cast<int64_t>(have.size() + to_create.size());
  Result<kube::Object> r = kube::UpdateWithRetry(
      client_, kube::kBackups, options_.ns, b.meta.name, [&](kube::Object& o) {
        if (PhaseOf(o) != velero::kPhaseInProgress) return Status::Cancelled("phase changed");
        SetAnnotation(o, kAnnotationPvbsCreated, "true");
        SetAnnotation(o, kAnnotationSkippedVolumes, JsonList(skipped));
        SetAnnotation(o, kAnnotationWarnings, JsonList(warnings));
        SetAnnotation(o, kAnnotationErrors, JsonList(errors));
        o["status"]["warnings"] = static_cast<int64_t>(warnings.size());
        o["status"]["errors"] = static_cast<int64_t>(errors.size());
        o["status"]["progress"] = {{"totalItems", total}, {"itemsBackedUp", int64_t{0}}};
        return Status::Ok();
      });
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kCancelled) return Status::Ok();
    return r.status();
  }
  log->info("backup pvbs created backup={} pvbs={} skipped={} errors={}", b.meta.name, total,
            skipped.size(), errors.size());
  return Continue(*r);
}

Status BackupController::Finish(const kube::Object& obj, const velero::Backup& b,
                                repo::ObjectStore* store, bool timed_out, std::string failure) {
  auto log = GetLogger("coordinator");
  const std::string name = obj["metadata"].value("name", "");
  std::vector<std::string> warnings = ParseJsonList(b.meta.annotations, kAnnotationWarnings);
  std::vector<std::string> errors = ParseJsonList(b.meta.annotations, kAnnotationErrors);
  std::vector<kube::Object> final_pvbs;
  int64_t completed = 0;
  if (failure.empty() && !b.meta.uid.empty()) {
    kube::ListOptions lo;
    lo.label_selector = fmt::format("{}={}", velero::kLabelBackupUid, b.meta.uid);
    FSB_ASSIGN_OR_RETURN(kube::ObjectList pvbs,
                         client_.List(kube::kPodVolumeBackups, options_.ns, lo));
    std::sort(pvbs.items.begin(), pvbs.items.end(),
              [](const kube::Object& x, const kube::Object& y) {
                return x["metadata"].value("name", "") < y["metadata"].value("name", "");
              });
    for (kube::Object& p : pvbs.items) {
      Result<velero::PodVolumeBackup> pvb = velero::ParsePodVolumeBackup(p);
      const std::string phase = PhaseOf(p);
      const std::string msg = pvb.ok() ? pvb->message : "";
      if (phase == velero::kPhaseCompleted) {
        completed++;
      } else if (phase == velero::kPhaseFailed) {
        errors.push_back("pod volume backup failed: " + msg);
      } else if (phase == velero::kPhaseCanceled) {
        errors.push_back("pod volume backup canceled: " + msg);
      } else if (timed_out) {
        // Not final at the deadline: ask its agent to stop.
        const std::string pname = p["metadata"].value("name", "");
        Result<kube::Object> c = client_.MergePatch(kube::kPodVolumeBackups, options_.ns, pname,
                                                    {{"spec", {{"cancel", true}}}});
        if (!c.ok()) {
          log->warn("cancel pvb failed pvb={}/{} err=\"{}\"", options_.ns, pname,
                    c.status().ToString());
        }
      }
      final_pvbs.push_back(ForRecord(std::move(p)));
    }
    if (timed_out) errors.push_back("timed out waiting for all PodVolumeBackups to complete");
  }
  kube::Object record = ForRecord(obj);
  kube::Object& st = record["status"];
  if (!st.is_object()) st = kube::Object::object();
  st["completionTimestamp"] = NowTimestamp();
  st["warnings"] = static_cast<int64_t>(warnings.size());
  st["errors"] = static_cast<int64_t>(errors.size());
  st["progress"] = {{"totalItems", static_cast<int64_t>(final_pvbs.size())},
                    {"itemsBackedUp", completed}};
  if (failure.empty()) {
    st["phase"] = errors.empty() ? velero::kPhaseCompleted : kPhasePartiallyFailed;
    SetAnnotation(record, kAnnotationErrors, JsonList(errors));
    Status s = store ? WriteBackupRecord(*store, name, record) : Status::Internal("no store");
    if (s.ok()) s = WritePodVolumeBackupsRecord(*store, name, final_pvbs);
    if (!s.ok()) {
      if (s.code() == StatusCode::kUnavailable) return s;  // retry later
      failure = fmt::format("write backup records to {}: {}", store->Location(), s.message());
    }
  }
  if (!failure.empty()) {
    st["phase"] = velero::kPhaseFailed;
    st["failureReason"] = failure;
    log->error("backup failed backup={} err=\"{}\"", name, failure);
  }
  const kube::Object final_status = st;
  Result<kube::Object> r =
      kube::UpdateWithRetry(client_, kube::kBackups, options_.ns, name, [&](kube::Object& o) {
        if (PhaseOf(o) != velero::kPhaseInProgress) return Status::Cancelled("phase changed");
        for (auto it = final_status.begin(); it != final_status.end(); ++it) {
          o["status"][it.key()] = it.value();
        }
        SetAnnotation(o, kAnnotationErrors, JsonList(errors));
        return Status::Ok();
      });
  if (!r.ok() && r.status().code() != StatusCode::kCancelled) return r.status();
  log->info("backup finished backup={} phase={} pvbs={} completed={} warnings={} errors={}", name,
            final_status.value("phase", ""), final_pvbs.size(), completed, warnings.size(),
            errors.size());
  return Status::Ok();
}

}  // namespace fsb::coordinator
