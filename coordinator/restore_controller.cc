#include "coordinator/restore_controller.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "base/log.h"
#include "coordinator/common.h"
#include "coordinator/records.h"
#include "coordinator/selection.h"

namespace fsb::coordinator {
namespace velero = kube::velero;
namespace {

constexpr std::string_view kPhasePartiallyFailed = "PartiallyFailed";
constexpr std::string_view kLabelScheduleName = "velero.io/schedule-name";


std::string Str(const kube::Object& o, std::initializer_list<std::string_view> path) {
  const kube::Object* cur = &o;
  for (std::string_view p : path) {
    if (!cur->is_object()) return "";
    auto it = cur->find(p);
    if (it == cur->end()) return "";
    cur = &*it;
  }
  return cur->is_string() ? cur->get<std::string>() : "";
}

// Velero's resetMetadata plus the restore labels.
void ResetMetadata(kube::Object& obj, std::string_view target_ns, std::string_view backup,
                   std::string_view restore) {
  kube::Object& md = obj["metadata"];
  if (!md.is_object()) md = kube::Object::object();
  for (const char* k : {"generateName", "selfLink", "uid", "resourceVersion", "generation",
                        "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                        "ownerReferences", "managedFields", "finalizers"}) {
    md.erase(k);
  }
  md["namespace"] = std::string(target_ns);
  if (!md.contains("labels") || !md["labels"].is_object()) md["labels"] = kube::Object::object();
  md["labels"][std::string(velero::kLabelBackupName)] = ValidLabelValue(backup);
  md["labels"][std::string(velero::kLabelRestoreName)] = ValidLabelValue(restore);
  obj.erase("status");
}

bool IsTokenVolume(const std::string& name) {
  return name.starts_with("default-token-") || name.starts_with("kube-api-access-");
}

void RemoveMounts(kube::Object& containers, const std::set<std::string>& volumes) {
  if (!containers.is_array()) return;
  for (kube::Object& c : containers) {
    if (!c.is_object() || !c.contains("volumeMounts") || !c["volumeMounts"].is_array()) continue;
    kube::Object kept = kube::Object::array();
    for (const kube::Object& m : c["volumeMounts"]) {
      if (!(m.is_object() && volumes.count(m.value("name", "")))) kept.push_back(m);
    }
    c["volumeMounts"] = kept;
  }
}

}  // namespace

std::vector<std::string> ValidateRestoreSpec(const velero::Restore& r) {
  std::vector<std::string> errs;
  if (r.backup_name.empty() == r.schedule_name.empty()) {
    errs.push_back(
        "Either a backup or schedule must be specified as a source for the restore, but not "
        "both");
  }
  std::vector<std::string> f = ValidateFilters(r.included_namespaces, r.excluded_namespaces,
                                               r.label_selector, r.or_label_selectors);
  errs.insert(errs.end(), f.begin(), f.end());
  if (!r.existing_resource_policy.empty() && r.existing_resource_policy != "none" &&
      r.existing_resource_policy != "update") {
    errs.push_back("Invalid existing resource policy: " + r.existing_resource_policy);
  }
  for (const auto& [from, to] : r.namespace_mapping) {
    if (from.empty() || to.empty()) errs.push_back("namespaceMapping: empty namespace name");
  }
  auto it = r.meta.annotations.find(std::string(kAnnotationPodVolumeTimeout));
  if (it != r.meta.annotations.end()) {
    if (auto d = velero::ParseGoDuration(it->second); !d.ok()) {
      errs.push_back(fmt::format("invalid annotation {}: {}", kAnnotationPodVolumeTimeout,
                                 d.status().message()));
    }
  }
  return errs;
}

kube::Object PrepareRestoredPvc(const kube::Object& pvc, std::string_view target_ns,
                                std::string_view backup, std::string_view restore) {
  kube::Object out = pvc;
  ResetMetadata(out, target_ns, backup, restore);
  if (out.contains("spec") && out["spec"].is_object()) out["spec"].erase("volumeName");
  kube::Object& md = out["metadata"];
  if (md.contains("annotations") && md["annotations"].is_object()) {
    for (const char* k : {"pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
                          "volume.kubernetes.io/selected-node"}) {
      md["annotations"].erase(k);
    }
  }
  return out;
}

kube::Object PrepareRestoredPod(const kube::Object& pod, std::string_view target_ns,
                                std::string_view backup, std::string_view restore,
                                std::string_view restore_uid,
                                const std::vector<std::string>& restore_volumes,
                                const RestoreHelperOptions& helper) {
  kube::Object out = pod;
  ResetMetadata(out, target_ns, backup, restore);
  kube::Object& spec = out["spec"];
  if (!spec.is_object()) spec = kube::Object::object();
  spec.erase("nodeName");
  spec.erase("priority");
  std::set<std::string> tokens;
  if (spec.contains("volumes") && spec["volumes"].is_array()) {
    kube::Object kept = kube::Object::array();
    for (const kube::Object& v : spec["volumes"]) {
      const std::string name = v.is_object() ? v.value("name", "") : "";
      if (IsTokenVolume(name)) {
        tokens.insert(name);
      } else {
        kept.push_back(v);
      }
    }
    spec["volumes"] = kept;
  }
  if (!tokens.empty()) {
    if (spec.contains("containers")) RemoveMounts(spec["containers"], tokens);
    if (spec.contains("initContainers")) RemoveMounts(spec["initContainers"], tokens);
  }
  if (restore_volumes.empty()) return out;

  kube::Object inits = kube::Object::array();
  if (spec.contains("initContainers") && spec["initContainers"].is_array()) {
    for (const kube::Object& c : spec["initContainers"]) {
      const std::string name = c.is_object() ? c.value("name", "") : "";
      if (name != "restore-wait" && name != "restic-wait") inits.push_back(c);
    }
  }
  kube::Object mounts = kube::Object::array();
  for (const std::string& v : restore_volumes) {
    mounts.push_back({{"name", v}, {"mountPath", "/restores/" + v}});
  }
  kube::Object security;
  if (spec.contains("containers") && spec["containers"].is_array() && !spec["containers"].empty() &&
      spec["containers"][0].is_object() && spec["containers"][0].contains("securityContext")) {
    security = spec["containers"][0]["securityContext"];
  } else {
    security = {{"runAsUser", 1000},
                {"runAsNonRoot", true},
                {"allowPrivilegeEscalation", false},
                {"capabilities", {{"drop", {"ALL"}}}},
                {"seccompProfile", {{"type", "RuntimeDefault"}}}};
  }
  kube::Object wait = {
      {"name", "restore-wait"},
      {"image", helper.image},
      {"imagePullPolicy", "IfNotPresent"},
      {"command", {helper.command}},
      {"args", {std::string(restore_uid)}},
      {"env",
       {{{"name", "POD_NAMESPACE"},
         {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.namespace"}}}}}},
        {{"name", "POD_NAME"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.name"}}}}}}}},
      {"volumeMounts", mounts},
      {"resources",
       {{"requests", {{"cpu", helper.cpu}, {"memory", helper.memory}}},
        {"limits", {{"cpu", helper.cpu}, {"memory", helper.memory}}}}},
      {"securityContext", security},
      {"terminationMessagePath", "/dev/termination-log"},
      {"terminationMessagePolicy", "File"}};
  inits.insert(inits.begin(), wait);
  spec["initContainers"] = inits;
  return out;
}

RestoreController::RestoreController(kube::Client& client, StorageLocations& storage,
                                     RestoreControllerOptions options)
    : client_(client), storage_(storage), options_(std::move(options)) {}

Status RestoreController::Reconcile(std::string_view name) {
  Result<kube::Object> obj = client_.Get(kube::kRestores, options_.ns, name);
  if (!obj.ok()) {
    if (obj.status().code() == StatusCode::kNotFound) return Status::Ok();
    return obj.status();
  }
  Result<kube::ObjectMeta> meta = kube::ParseMeta(*obj);
  if (!meta.ok() || !ClaimedByFsb(*meta, options_.claim_all) || meta->deletion_timestamp) {
    return Status::Ok();
  }
  const std::string phase = PhaseOf(*obj);
  if (phase.empty() || phase == velero::kPhaseNew) return Start(*obj);
  if (phase == velero::kPhaseInProgress && HandledByFsb(*meta)) return Continue(*obj);
  return Status::Ok();
}

Result<kube::Object> RestoreController::FindBackup(std::string_view name, std::string* bsl_name) {
  Result<kube::Object> b = client_.Get(kube::kBackups, options_.ns, name);
  if (b.ok()) {
    *bsl_name = Str(*b, {"spec", "storageLocation"});
    return b;
  }
  if (b.status().code() != StatusCode::kNotFound) return b.status();
  // A new cluster: look for the records in every BSL.
  FSB_ASSIGN_OR_RETURN(kube::ObjectList bsls,
                       client_.List(kube::kBackupStorageLocations, options_.ns));
  for (const kube::Object& o : bsls.items) {
    Result<velero::BackupStorageLocation> bsl = velero::ParseBackupStorageLocation(o);
    if (!bsl.ok()) continue;
    Result<std::unique_ptr<repo::ObjectStore>> store = storage_.OpenStore(*bsl);
    if (!store.ok()) continue;
    Result<kube::Object> rec = ReadBackupRecord(**store, name);
    if (rec.ok()) {
      *bsl_name = bsl->meta.name;
      return rec;
    }
  }
  return b.status();
}

Status RestoreController::Start(const kube::Object& obj) {
  auto log = GetLogger("coordinator");
  Result<velero::Restore> parsed = velero::ParseRestore(obj);
  std::vector<std::string> errs;
  std::string backup_name, bsl_name;
  if (!parsed.ok()) {
    errs.push_back(std::string(parsed.status().message()));
  } else {
    errs = ValidateRestoreSpec(*parsed);
    backup_name = parsed->backup_name;
    if (errs.empty() && backup_name.empty()) {
      // The newest finished backup of the schedule, as Velero.
      kube::ListOptions lo;
      lo.label_selector =
          fmt::format("{}={}", kLabelScheduleName, ValidLabelValue(parsed->schedule_name));
      FSB_ASSIGN_OR_RETURN(kube::ObjectList list, client_.List(kube::kBackups, options_.ns, lo));
      std::string newest;
      for (const kube::Object& b : list.items) {
        const std::string ph = PhaseOf(b);
        if (ph != velero::kPhaseCompleted && ph != kPhasePartiallyFailed) continue;
        const std::string start = Str(b, {"status", "startTimestamp"});
        if (backup_name.empty() || start > newest) {
          backup_name = Str(b, {"metadata", "name"});
          newest = start;
        }
      }
      if (backup_name.empty()) errs.push_back("No backups found for schedule");
    }
    if (errs.empty()) {
      Result<kube::Object> backup = FindBackup(backup_name, &bsl_name);
      if (!backup.ok()) {
        if (backup.status().code() != StatusCode::kNotFound) return backup.status();
        errs.push_back("Error retrieving backup: " + std::string(backup.status().message()));
      } else {
        const std::string ph = PhaseOf(*backup);
        if (ph != velero::kPhaseCompleted && ph != kPhasePartiallyFailed) {
          errs.push_back(fmt::format(
              "backup {} is in phase \"{}\": only Completed or PartiallyFailed backups can be "
              "restored",
              backup_name, ph));
        }
        Result<velero::BackupStorageLocation> bsl = storage_.Get(bsl_name);
        if (!bsl.ok()) {
          if (bsl.status().code() != StatusCode::kNotFound) return bsl.status();
          errs.push_back(fmt::format("backup storage location {} of backup {} not found", bsl_name,
                                     backup_name));
        }
      }
    }
  }
  const std::string name = Str(obj, {"metadata", "name"});
  kube::Object next = ClaimedCopy(obj, errs);
  kube::Object& st = next["status"];
  if (!errs.empty()) {
    log->error("restore failed validation restore={} errors=\"{}\"", name, fmt::join(errs, "; "));
  } else {
    st["phase"] = velero::kPhaseInProgress;
    st["startTimestamp"] = NowTimestamp();
    next["spec"]["backupName"] = backup_name;
    SetAnnotation(next, kAnnotationStorageLocation, bsl_name);
    log->info("restore started restore={} backup={} bsl={}", name, backup_name, bsl_name);
  }
  FSB_ASSIGN_OR_RETURN(kube::Object stored,
                       PutClaimed(client_, kube::kRestores, options_.ns, next, "restore"));
  if (!errs.empty()) return Status::Ok();
  return Continue(stored);
}

Status RestoreController::Continue(const kube::Object& obj) {
  Result<velero::Restore> parsed = velero::ParseRestore(obj);
  if (!parsed.ok()) {
    return Finish(obj, velero::Restore{}, {}, std::string(parsed.status().message()));
  }
  const velero::Restore& r = *parsed;
  auto an = r.meta.annotations.find(std::string(kAnnotationStorageLocation));
  const std::string bsl_name = an == r.meta.annotations.end() ? "" : an->second;
  if (r.meta.annotations.count(std::string(kAnnotationPvrsCreated)) == 0) {
    Result<velero::BackupStorageLocation> bsl = storage_.Get(bsl_name);
    if (!bsl.ok()) {
      if (bsl.status().code() != StatusCode::kNotFound) return bsl.status();
      return Finish(obj, r, {}, fmt::format("backup storage location {} not found", bsl_name));
    }
    Result<std::unique_ptr<repo::ObjectStore>> store = storage_.OpenStore(*bsl);
    if (!store.ok()) return Finish(obj, r, {}, std::string(store.status().message()));
    std::string unused;
    Result<kube::Object> backup = FindBackup(r.backup_name, &unused);
    if (!backup.ok()) {
      if (backup.status().code() != StatusCode::kNotFound) return backup.status();
      return Finish(obj, r, {},
                    "Error retrieving backup: " + std::string(backup.status().message()));
    }
    return Plan(obj, r, *backup, **store);
  }

  // Waiting for the PVRs; a PVR whose pod landed on a node without an agent never finishes.
  kube::ListOptions lo;
  lo.label_selector = fmt::format("{}={}", velero::kLabelRestoreUid, r.meta.uid);
  FSB_ASSIGN_OR_RETURN(kube::ObjectList pvrs,
                       client_.List(kube::kPodVolumeRestores, options_.ns, lo));
  kube::ListOptions agents_lo;
  agents_lo.label_selector = std::string(kNodeAgentSelector);
  FSB_ASSIGN_OR_RETURN(kube::ObjectList agents, client_.List(kube::kPods, options_.ns, agents_lo));
  std::set<std::string> agent_nodes;
  for (const kube::Object& o : agents.items) {
    Result<kube::Pod> p = kube::ParsePod(o);
    if (p.ok() && p->phase == "Running" && !p->meta.deletion_timestamp) {
      agent_nodes.insert(p->node_name);
    }
  }
  std::vector<std::string> stuck;
  std::set<std::string> stuck_nodes;
  size_t ended = 0;
  for (const kube::Object& p : pvrs.items) {
    if (velero::IsFinalPhase(PhaseOf(p))) {
      ended++;
      continue;
    }
    Result<kube::Object> pod = client_.Get(kube::kPods, Str(p, {"spec", "pod", "namespace"}),
                                           Str(p, {"spec", "pod", "name"}));
    if (!pod.ok()) continue;
    const std::string node = Str(*pod, {"spec", "nodeName"});
    if (!node.empty() && agent_nodes.count(node) == 0) {
      ended++;
      if (stuck_nodes.insert(node).second) {
        stuck.push_back(fmt::format("node-agent pod is not running in node {}", node));
      }
    }
  }
  if (ended == pvrs.items.size()) return Finish(obj, r, stuck, "");
  std::chrono::milliseconds timeout = options_.fs_backup_timeout;
  if (auto it = r.meta.annotations.find(std::string(kAnnotationPodVolumeTimeout));
      it != r.meta.annotations.end()) {
    if (auto d = velero::ParseGoDuration(it->second); d.ok()) timeout = *d;
  }
  if (r.start_timestamp) {
    if (auto start = kube::ParseTime(*r.start_timestamp);
        start.ok() && kube::Clock::now() > *start + timeout) {
      stuck.push_back("timed out waiting for all PodVolumeRestores to complete");
      return Finish(obj, r, stuck, "");
    }
  }
  return Status::Ok();
}

Status RestoreController::Plan(const kube::Object& obj, const velero::Restore& r,
                               const kube::Object& backup, repo::ObjectStore& store) {
  auto log = GetLogger("coordinator");
  const std::string backup_name = Str(backup, {"metadata", "name"});
  const std::string bsl_name = r.meta.annotations.at(std::string(kAnnotationStorageLocation));
  Result<std::vector<kube::Object>> pvbs = ReadPodVolumeBackupsRecord(store, backup_name);
  Result<std::vector<kube::Object>> resources = ReadResourcesRecord(store, backup_name);
  for (const Status& s : {pvbs.status(), resources.status()}) {
    if (s.ok()) continue;
    if (s.code() == StatusCode::kUnavailable) return s;
    return Finish(obj, r, {},
                  fmt::format("backup {} has no usable fsb records in backup storage location "
                              "{}: {}",
                              backup_name, bsl_name, s.message()));
  }
  FSB_ASSIGN_OR_RETURN(velero::BackupStorageLocation bsl, storage_.Get(bsl_name));

  // (original namespace, pod name) → volume → the PVB that has its snapshot.
  std::map<std::pair<std::string, std::string>, std::map<std::string, velero::PodVolumeBackup>>
      snapshots;
  for (const kube::Object& o : *pvbs) {
    Result<velero::PodVolumeBackup> p = velero::ParsePodVolumeBackup(o);
    if (!p.ok() || p->phase != velero::kPhaseCompleted || p->snapshot_id.empty()) continue;
    snapshots[{p->pod.ns, p->pod.name}][p->volume] = *p;
  }
  kube::ListOptions by_uid;
  by_uid.label_selector = fmt::format("{}={}", velero::kLabelRestoreUid, r.meta.uid);
  FSB_ASSIGN_OR_RETURN(kube::ObjectList existing_pvrs,
                       client_.List(kube::kPodVolumeRestores, options_.ns, by_uid));
  std::set<std::pair<std::string, std::string>> have;  // (pod uid, volume)
  for (const kube::Object& o : existing_pvrs.items) {
    have.emplace(Str(o, {"spec", "pod", "uid"}), Str(o, {"spec", "volume"}));
  }

  const bool pods_included = ResourceIncluded("pods", r.included_resources, r.excluded_resources);
  const bool pvcs_included =
      ResourceIncluded("persistentvolumeclaims", r.included_resources, r.excluded_resources);
  const bool update = r.existing_resource_policy == "update";
  auto target_ns = [&](const std::string& ns) {
    auto it = r.namespace_mapping.find(ns);
    return it == r.namespace_mapping.end() ? ns : it->second;
  };
  auto selected = [&](const kube::Object& o, const std::string& ns) {
    if (!NamespaceIncluded(ns, r.included_namespaces, r.excluded_namespaces)) return false;
    Result<kube::ObjectMeta> m = kube::ParseMeta(o);
    return m.ok() && LabelsSelected(m->labels, r.label_selector, r.or_label_selectors);
  };
  std::vector<std::string> warnings, errors;
  std::set<std::string> namespaces_done;
  int64_t restored = 0;
  auto ensure_namespace = [&](const std::string& ns) -> Status {
    if (!namespaces_done.insert(ns).second) return Status::Ok();
    Result<kube::Object> got = client_.Get(kube::kNamespaces, "", ns);
    if (got.ok()) return Status::Ok();
    if (got.status().code() != StatusCode::kNotFound) return got.status();
    kube::Object n = {
        {"apiVersion", "v1"},
        {"kind", "Namespace"},
        {"metadata",
         {{"name", ns},
          {"labels",
           {{std::string(velero::kLabelBackupName), ValidLabelValue(backup_name)},
            {std::string(velero::kLabelRestoreName), ValidLabelValue(r.meta.name)}}}}}};
    Result<kube::Object> c = client_.Create(kube::kNamespaces, "", n);
    if (!c.ok() && c.status().code() != StatusCode::kAlreadyExists) {
      return c.status().WithContext("create namespace " + ns);
    }
    restored++;
    return Status::Ok();
  };
  // Creates `obj` (already prepared) unless it exists; an existing object this restore created
  // (a restart) counts as created; any other one is a warning, or with existingResourcePolicy
  // update gets the backup's labels and annotations. Returns the object now stored when it is
  // this restore's, nullopt when it is someone else's.
  auto create_or_keep = [&](const kube::Resource& res, const kube::Object& prepared,
                            const kube::Object& original) -> Result<std::optional<kube::Object>> {
    const std::string ns = Str(prepared, {"metadata", "namespace"});
    const std::string nm = Str(prepared, {"metadata", "name"});
    Result<kube::Object> got = client_.Get(res, ns, nm);
    if (got.ok()) {
      if (Str(*got, {"metadata", "labels", std::string(velero::kLabelRestoreName)}) ==
          ValidLabelValue(r.meta.name)) {
        return std::optional<kube::Object>(*got);
      }
      if (update) {
        kube::Object patch = {{"metadata", kube::Object::object()}};
        for (const char* k : {"labels", "annotations"}) {
          if (original.contains("metadata") && original["metadata"].contains(k)) {
            patch["metadata"][k] = original["metadata"][k];
          }
        }
        Result<kube::Object> p = client_.MergePatch(res, ns, nm, patch);
        if (!p.ok()) {
          warnings.push_back(fmt::format("could not update {} {}/{}: {}", res.plural, ns, nm,
                                         p.status().message()));
        }
      } else {
        warnings.push_back(
            fmt::format("could not restore, {} \"{}\" already exists. Warning: "
                        "the in-cluster version is different than the backed-up "
                        "version",
                        res.QualifiedName(), nm));
      }
      return std::optional<kube::Object>();
    }
    if (got.status().code() != StatusCode::kNotFound) return got.status();
    Result<kube::Object> c = client_.Create(res, ns, prepared);
    if (!c.ok()) {
      if (c.status().code() == StatusCode::kUnavailable) return c.status();
      errors.push_back(
          fmt::format("error restoring {} {}/{}: {}", res.plural, ns, nm, c.status().message()));
      return std::optional<kube::Object>();
    }
    restored++;
    log->info("restored object restore={} kind={} ns={} name={}", r.meta.name, res.kind, ns, nm);
    return std::optional<kube::Object>(*c);
  };

  // PVCs first, so the pods find their claims.
  for (const kube::Object& o : *resources) {
    if (o.value("kind", "") != "PersistentVolumeClaim" || !pvcs_included) continue;
    const std::string ns = Str(o, {"metadata", "namespace"});
    if (!selected(o, ns)) continue;
    FSB_RETURN_IF_ERROR(ensure_namespace(target_ns(ns)));
    FSB_ASSIGN_OR_RETURN(
        std::optional<kube::Object> kept,
        create_or_keep(kube::kPersistentVolumeClaims,
                       PrepareRestoredPvc(o, target_ns(ns), backup_name, r.meta.name), o));
    (void)kept;
  }
  int64_t pvrs_total = static_cast<int64_t>(have.size());
  for (const kube::Object& o : *resources) {
    if (o.value("kind", "") != "Pod" || !pods_included) continue;
    const std::string ns = Str(o, {"metadata", "namespace"});
    const std::string pod_name = Str(o, {"metadata", "name"});
    if (!selected(o, ns)) continue;
    Result<kube::Pod> orig = kube::ParsePod(o);
    if (!orig.ok()) {
      errors.push_back(std::string(orig.status().message()));
      continue;
    }
    // The volumes to restore: a snapshot, still a volume of the pod, not projected/downwardAPI,
    // and PVC volumes only when PVCs are restored.
    std::vector<std::string> volumes;
    auto snaps = snapshots.find({ns, pod_name});
    if (snaps != snapshots.end()) {
      for (const auto& [vol, pvb] : snaps->second) {
        const kube::PodVolume* v = orig->FindVolume(vol);
        if (!v || v->kind == kube::VolumeKind::kProjected ||
            v->kind == kube::VolumeKind::kDownwardApi) {
          continue;
        }
        if (!v->claim_name.empty() && !pvcs_included) continue;
        volumes.push_back(vol);
      }
    }
    const std::string tns = target_ns(ns);
    FSB_RETURN_IF_ERROR(ensure_namespace(tns));
    FSB_ASSIGN_OR_RETURN(std::optional<kube::Object> pod,
                         create_or_keep(kube::kPods,
                                        PrepareRestoredPod(o, tns, backup_name, r.meta.name,
                                                           r.meta.uid, volumes, options_.helper),
                                        o));
    if (!pod || volumes.empty()) continue;
    const std::string new_uid = Str(*pod, {"metadata", "uid"});
    for (const std::string& vol : volumes) {
      if (have.count({new_uid, vol})) continue;
      const velero::PodVolumeBackup& pvb = snaps->second.at(vol);
      Result<std::string> ident = velero::RepoIdentifier(bsl, ns);
      kube::ObjectReference ref;
      ref.kind = "Pod";
      ref.ns = tns;
      ref.name = pod_name;
      ref.uid = new_uid;
      kube::Object labels = {{std::string(velero::kLabelRestoreName), ValidLabelValue(r.meta.name)},
                             {std::string(velero::kLabelRestoreUid), r.meta.uid},
                             {std::string(velero::kLabelPodUid), new_uid}};
      if (auto pl = pvb.meta.labels.find(std::string(velero::kLabelPvcUid));
          pl != pvb.meta.labels.end()) {
        labels[std::string(velero::kLabelPvcUid)] = pl->second;
      }
      kube::Object spec = {
          {"pod", kube::ToJson(ref)},
          {"volume", vol},
          {"backupStorageLocation", bsl.meta.name},
          {"repoIdentifier", ident.ok() ? *ident : std::string()},
          {"uploaderType", pvb.uploader_type.empty() ? "restic" : pvb.uploader_type},
          {"snapshotID", pvb.snapshot_id},
          {"sourceNamespace", ns}};
      if (r.has_uploader_config) {
        spec["uploaderSettings"] = {{"WriteSparseFiles", r.write_sparse_files ? "true" : "false"}};
        if (r.parallel_files_download > 0) {
          spec["uploaderSettings"]["ParallelFilesDownload"] =
              std::to_string(r.parallel_files_download);
        }
      }
      kube::Object pvr = {{"apiVersion", std::string(velero::kApiVersion)},
                          {"kind", "PodVolumeRestore"},
                          {"metadata",
                           {{"generateName", r.meta.name + "-"},
                            {"namespace", options_.ns},
                            {"labels", labels},
                            {"ownerReferences",
                             {{{"apiVersion", std::string(velero::kApiVersion)},
                               {"kind", "Restore"},
                               {"name", r.meta.name},
                               {"uid", r.meta.uid},
                               {"controller", true}}}}}},
                          {"spec", spec}};
      Result<kube::Object> c = client_.Create(kube::kPodVolumeRestores, options_.ns, pvr);
      if (!c.ok()) return c.status().WithContext("create podvolumerestore");
      pvrs_total++;
      log->info("pvr created pvr={}/{} restore={} ns={} pod={} volume={} snapshot={}", options_.ns,
                (*c)["metadata"].value("name", ""), r.meta.name, tns, pod_name, vol,
                pvb.snapshot_id);
    }
  }
  for (const std::string& e : errors) {
    log->error("restore error restore={} err=\"{}\"", r.meta.name, e);
  }
  Result<kube::Object> u = kube::UpdateWithRetry(
      client_, kube::kRestores, options_.ns, r.meta.name, [&](kube::Object& o) {
        if (PhaseOf(o) != velero::kPhaseInProgress) return Status::Cancelled("phase changed");
        SetAnnotation(o, kAnnotationPvrsCreated, "true");
        SetAnnotation(o, kAnnotationWarnings, JsonList(warnings));
        SetAnnotation(o, kAnnotationErrors, JsonList(errors));
        o["status"]["warnings"] = static_cast<int64_t>(warnings.size());
        o["status"]["errors"] = static_cast<int64_t>(errors.size());
        o["status"]["progress"] = {{"totalItems", restored + pvrs_total},
                                   {"itemsRestored", restored}};
        return Status::Ok();
      });
  if (!u.ok()) {
    if (u.status().code() == StatusCode::kCancelled) return Status::Ok();
    return u.status();
  }
  log->info("restore pvrs created restore={} objects={} pvrs={} warnings={} errors={}", r.meta.name,
            restored, pvrs_total, warnings.size(), errors.size());
  return Continue(*u);
}

Status RestoreController::Finish(const kube::Object& obj, const velero::Restore& r,
                                 std::vector<std::string> extra_errors, std::string failure) {
  auto log = GetLogger("coordinator");
  const std::string name = Str(obj, {"metadata", "name"});
  std::vector<std::string> errors = ParseJsonList(r.meta.annotations, kAnnotationErrors);
  std::vector<std::string> warnings = ParseJsonList(r.meta.annotations, kAnnotationWarnings);
  int64_t done = 0, total = 0;
  if (failure.empty() && !r.meta.uid.empty()) {
    kube::ListOptions lo;
    lo.label_selector = fmt::format("{}={}", velero::kLabelRestoreUid, r.meta.uid);
    FSB_ASSIGN_OR_RETURN(kube::ObjectList pvrs,
                         client_.List(kube::kPodVolumeRestores, options_.ns, lo));
    for (const kube::Object& p : pvrs.items) {
      total++;
      const std::string phase = PhaseOf(p);
      const std::string msg = Str(p, {"status", "message"});
      if (phase == velero::kPhaseCompleted) {
        done++;
      } else if (phase == velero::kPhaseFailed) {
        errors.push_back("pod volume restore failed: " + msg);
      } else if (phase == velero::kPhaseCanceled) {
        errors.push_back("pod volume restore canceled: " + msg);
      }
    }
  }
  errors.insert(errors.end(), extra_errors.begin(), extra_errors.end());
  int64_t items_restored = 0, items_total = 0;
  if (obj.contains("status") && obj["status"].is_object() && obj["status"].contains("progress") &&
      obj["status"]["progress"].is_object()) {
    items_restored = obj["status"]["progress"].value("itemsRestored", int64_t{0});
    items_total = obj["status"]["progress"].value("totalItems", int64_t{0});
  }
  kube::Object st = {{"completionTimestamp", NowTimestamp()},
                     {"warnings", static_cast<int64_t>(warnings.size())},
                     {"errors", static_cast<int64_t>(errors.size())},
                     {"progress",
                      {{"totalItems", std::max(items_total, items_restored + total)},
                       {"itemsRestored", items_restored + done}}}};
  if (!failure.empty()) {
    st["phase"] = velero::kPhaseFailed;
    st["failureReason"] = failure;
    log->error("restore failed restore={} err=\"{}\"", name, failure);
  } else {
    st["phase"] = errors.empty() ? velero::kPhaseCompleted : kPhasePartiallyFailed;
  }
  Result<kube::Object> u =
      kube::UpdateWithRetry(client_, kube::kRestores, options_.ns, name, [&](kube::Object& o) {
        if (PhaseOf(o) != velero::kPhaseInProgress) return Status::Cancelled("phase changed");
        for (auto it = st.begin(); it != st.end(); ++it) o["status"][it.key()] = it.value();
        SetAnnotation(o, kAnnotationErrors, JsonList(errors));
        return Status::Ok();
      });
  if (!u.ok() && u.status().code() != StatusCode::kCancelled) return u.status();
  log->info("restore finished restore={} phase={} pvrs={} completed={} warnings={} errors={}", name,
            st.value("phase", ""), total, done, warnings.size(), errors.size());
  return Status::Ok();
}

}  // namespace fsb::coordinator
