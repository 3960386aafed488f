#include "coordinator/selection.h"

#include <fmt/format.h>
#include <fnmatch.h>

#include <algorithm>
#include <set>

namespace fsb::coordinator {
namespace {

bool GlobMatch(const std::string& pattern, std::string_view s) {
  return ::fnmatch(pattern.c_str(), std::string(s).c_str(), 0) == 0;
}

// The canonical plural of a few resource spellings users write in filters.
std::string CanonicalResource(std::string_view r) {
  std::string s(r);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (const size_t dot = s.find('.'); dot != std::string::npos && s.substr(dot) != ".") {
    // "persistentvolumeclaims.v1" / "pods." are not groups of core kinds; core kinds have none.
    s = s.substr(0, dot);
  }
  static const std::map<std::string, std::string, std::less<>> kAliases = {
      {"po", "pods"},
      {"pod", "pods"},
      {"pvc", "persistentvolumeclaims"},
      {"persistentvolumeclaim", "persistentvolumeclaims"},
      {"pv", "persistentvolumes"},
      {"persistentvolume", "persistentvolumes"},
      {"ns", "namespaces"},
      {"namespace", "namespaces"},
  };
  auto it = kAliases.find(s);
  return it == kAliases.end() ? s : it->second;
}

}  // namespace

bool NamespaceIncluded(std::string_view ns, const std::vector<std::string>& included,
                       const std::vector<std::string>& excluded) {
  for (const std::string& e : excluded) {
    if (GlobMatch(e, ns)) return false;
  }
  if (included.empty()) return true;
  for (const std::string& i : included) {
    if (GlobMatch(i, ns)) return true;
  }
  return false;
}

bool ResourceIncluded(std::string_view resource, const std::vector<std::string>& included,
                      const std::vector<std::string>& excluded) {
  const std::string want = CanonicalResource(resource);
  for (const std::string& e : excluded) {
    if (e == "*" || CanonicalResource(e) == want) return false;
  }
  if (included.empty()) return true;
  for (const std::string& i : included) {
    if (i == "*" || CanonicalResource(i) == want) return true;
  }
  return false;
}

std::vector<std::string> ValidateFilters(
    const std::vector<std::string>& included_namespaces,
    const std::vector<std::string>& excluded_namespaces,
    const std::optional<kube::velero::LabelSelector>& label,
    const std::vector<kube::velero::LabelSelector>& or_labels) {
  std::vector<std::string> errs;
  // Velero's ValidateNamespaceIncludesExcludes.
  for (const std::string& e : excluded_namespaces) {
    if (e == "*") errs.push_back("excludes list must not contain '*'");
  }
  std::set<std::string> includes(included_namespaces.begin(), included_namespaces.end());
  for (const std::string& e : excluded_namespaces) {
    if (e != "*" && includes.count(e)) {
      errs.push_back(fmt::format(
          "Invalid included/excluded namespace lists: excludes list cannot contain an item in "
          "the includes list: {}",
          e));
    }
  }
  for (const std::string& n : included_namespaces) {
    if (n.empty()) errs.push_back("invalid namespace \"\": empty name in includedNamespaces");
  }
  if (label && !or_labels.empty()) {
    errs.push_back(
        "encountered labelSelector as well as orLabelSelectors in backup spec, only one can be "
        "specified");
  }
  if (label) {
    if (Status s = label->Validate(); !s.ok()) {
      errs.push_back("invalid labelSelector: " + std::string(s.message()));
    }
  }
  for (const kube::velero::LabelSelector& o : or_labels) {
    if (Status s = o.Validate(); !s.ok()) {
      errs.push_back("invalid orLabelSelectors: " + std::string(s.message()));
    }
  }
  return errs;
}

bool LabelsSelected(const kube::Labels& labels,
                    const std::optional<kube::velero::LabelSelector>& label,
                    const std::vector<kube::velero::LabelSelector>& or_labels) {
  if (label) return label->Matches(labels);
  if (!or_labels.empty()) {
    for (const kube::velero::LabelSelector& s : or_labels) {
      if (s.Matches(labels)) return true;
    }
    return false;
  }
  return true;
}

std::vector<std::string> AnnotationVolumes(const kube::Labels& annotations, std::string_view key) {
  std::vector<std::string> out;
  auto it = annotations.find(std::string(key));
  if (it == annotations.end()) return out;
  const std::string& v = it->second;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string::npos) comma = v.size();
    std::string name = v.substr(start, comma - start);  // no trimming, as Velero
    if (!name.empty()) out.push_back(std::move(name));
    start = comma + 1;
  }
  return out;
}

VolumeSelection SelectPodVolumes(const kube::Pod& pod,
                                 const std::map<std::string, ClaimInfo>& claims,
                                 const VolumeSelectionOptions& options) {
  VolumeSelection out;
  std::vector<std::string> candidates;
  if (options.default_volumes_to_fs_backup) {
    const std::vector<std::string> excludes =
        AnnotationVolumes(pod.meta.annotations, kAnnotationBackupVolumesExcludes);
    for (const kube::PodVolume& v : pod.volumes) {
      if (std::find(excludes.begin(), excludes.end(), v.name) != excludes.end()) {
        out.skipped.push_back(
            {v.name, fmt::format("excluded by annotation {}", kAnnotationBackupVolumesExcludes),
             false});
        continue;
      }
      candidates.push_back(v.name);
    }
  } else {
    candidates = AnnotationVolumes(pod.meta.annotations, kAnnotationBackupVolumes);
  }

  std::set<std::string> seen;
  for (const std::string& name : candidates) {
    if (!seen.insert(name).second) continue;  // listed twice in the annotation
    const kube::PodVolume* v = pod.FindVolume(name);
    if (!v) {
      out.skipped.push_back({name, "volume not found in pod spec", true});
      continue;
    }
    auto skip = [&](std::string reason, bool warning) {
      out.skipped.push_back({name, std::move(reason), warning});
    };
    switch (v->kind) {
      case kube::VolumeKind::kHostPath:
        skip(fmt::format("volume {} is a hostPath volume which is not supported for pod volume "
                         "backup, skipping",
                         name),
             true);
        continue;
      case kube::VolumeKind::kSecret:
      case kube::VolumeKind::kConfigMap:
      case kube::VolumeKind::kProjected:
      case kube::VolumeKind::kDownwardApi:
        skip(fmt::format("{} volumes are not backed up", v->source), false);
        continue;
      default:
        break;
    }
    if (name.starts_with("default-token")) {
      skip("service account token volume (default-token*) is not backed up", false);
      continue;
    }
    SelectedVolume sel;
    sel.name = name;
    if (v->kind == kube::VolumeKind::kPersistentVolumeClaim ||
        v->kind == kube::VolumeKind::kEphemeral) {
      if (!options.pvcs_included) {
        skip("persistentvolumeclaims are excluded by the backup's resource filter", false);
        continue;
      }
      sel.claim_name = v->claim_name;
      auto it = claims.find(v->claim_name);
      if (it != claims.end()) {
        const ClaimInfo& c = it->second;
        auto ex = c.labels.find(std::string(kLabelExcludeFromBackup));
        if (ex != c.labels.end() && ex->second == "true") {
          skip(fmt::format("persistentvolumeclaim {} has label {}=true", v->claim_name,
                           kLabelExcludeFromBackup),
               false);
          continue;
        }
        if (c.pv_is_host_path) {
          skip(fmt::format("volume {} is backed by a hostPath persistent volume which is not "
                           "supported for pod volume backup, skipping",
                           name),
               true);
          continue;
        }
        sel.claim_uid = c.uid;
      }
    }
    bool block = false, mounted = false;
    for (const kube::ContainerInfo& c : pod.containers) {
      block |= std::find(c.volume_devices.begin(), c.volume_devices.end(), name) !=
               c.volume_devices.end();
      mounted |=
          std::find(c.volume_mounts.begin(), c.volume_mounts.end(), name) != c.volume_mounts.end();
    }
    for (const kube::ContainerInfo& c : pod.init_containers) {
      block |= std::find(c.volume_devices.begin(), c.volume_devices.end(), name) !=
               c.volume_devices.end();
    }
    if (block) {
      skip(fmt::format("volume {} is a block volume (volumeDevices), which is not supported for "
                       "pod volume backup, skipping",
                       name),
           false);
      continue;
    }
    if (!mounted) {
      skip(fmt::format("volume {} is declared in pod {} but not mounted by any container, "
                       "skipping",
                       name, pod.meta.Key()),
           true);
      continue;
    }
    out.selected.push_back(std::move(sel));
  }
  return out;
}

bool EffectiveDefaultVolumesToFsBackup(const kube::velero::Backup& backup, bool flag_default) {
  if (backup.default_volumes_to_fs_backup) return *backup.default_volumes_to_fs_backup;
  if (backup.default_volumes_to_restic && *backup.default_volumes_to_restic) return true;
  return flag_default;
}

}  // namespace fsb::coordinator
