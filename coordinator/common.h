// coordinator/common.h: what the coordinator's controllers share: which Backups and Restores are
// fsb's to act on (coexistence with a Velero server, docs/design.md), the annotations it keeps
// its progress in, Velero's label-value rule and small JSON helpers. Pure functions; safe for
// concurrent use.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "kube/client.h"
#include "kube/objects.h"

namespace fsb::coordinator {

// A Backup or Restore with this label set to "true" is fsb's (unless claim_all is on, then every
// one is). Velero's server does not know the label, so a cluster running both opts objects into
// fsb one by one; `velero backup create --labels fsb.velero.io/coordinator=true` does it.
inline constexpr std::string_view kLabelCoordinator = "fsb.velero.io/coordinator";
// Set (with the resourceVersion read, so only one writer wins) when fsb moves a New object to
// InProgress; an object past New without it is someone else's and is never touched.
inline constexpr std::string_view kAnnotationHandledBy = "fsb.velero.io/handled-by";
inline constexpr std::string_view kHandledByValue = "fsb-coordinator";
// "true" once every PodVolumeBackup (PodVolumeRestore) of the object has been created: a
// restarted coordinator then only waits.
inline constexpr std::string_view kAnnotationPvbsCreated = "fsb.velero.io/pvbs-created";
inline constexpr std::string_view kAnnotationPvrsCreated = "fsb.velero.io/pvrs-created";
// JSON arrays of strings: each skipped volume with its reason, and each error, for a person
// (Velero keeps these in its backup log; the counts are in status.warnings / status.errors).
inline constexpr std::string_view kAnnotationSkippedVolumes = "fsb.velero.io/skipped-volumes";
inline constexpr std::string_view kAnnotationWarnings = "fsb.velero.io/warnings";
inline constexpr std::string_view kAnnotationErrors = "fsb.velero.io/errors";
// On a Restore: the BSL the backup's records were read from.
inline constexpr std::string_view kAnnotationStorageLocation = "fsb.velero.io/storage-location";
// Velero's per-object pod volume timeout (Go duration).
inline constexpr std::string_view kAnnotationPodVolumeTimeout = "velero.io/pod-volume-timeout";
// Velero's phase of a Backup or Restore whose spec is invalid.
inline constexpr std::string_view kPhaseFailedValidation = "FailedValidation";
// The label of the node-agent pods (velero-fs-backup.md §9.1).
inline constexpr std::string_view kNodeAgentSelector = "role=node-agent";

// Whether fsb acts on this Backup/Restore at all (see kLabelCoordinator).
bool ClaimedByFsb(const kube::ObjectMeta& meta, bool claim_all);
// Whether fsb started it (kAnnotationHandledBy).
bool HandledByFsb(const kube::ObjectMeta& meta);

// Velero's label.GetValidName: names longer than 63 characters become the first 57 characters
// plus the first 6 hex digits of the SHA-256 of the whole name.
std::string ValidLabelValue(std::string_view name);

// A JSON array of strings as an annotation value, and back (malformed or absent → empty).
std::string JsonList(const std::vector<std::string>& items);
std::vector<std::string> ParseJsonList(const kube::Labels& annotations, std::string_view key);

// The object's status.phase, "" when absent or not a string.
std::string PhaseOf(const kube::Object& obj);

// Sets metadata.annotations[key] (creating the map).
void SetAnnotation(kube::Object& obj, std::string_view key, const std::string& value);

// The current time as Kubernetes writes it (RFC 3339, UTC).
std::string NowTimestamp();

// The copy of a New Backup or Restore that fsb writes to take it on: `obj` with the handled-by
// annotation and, when `errs` is not empty, Velero's FailedValidation (phase, validationErrors,
// completionTimestamp). Its status is an object, for the caller to fill when `errs` is empty.
kube::Object ClaimedCopy(const kube::Object& obj, const std::vector<std::string>& errs);

// PUTs a claimed copy with the resourceVersion it was read at: a conflict (a Velero server or
// another coordinator changed the object meanwhile) is kUnavailable "<kind> <name> changed
// meanwhile (rv N)", so the next Reconcile sees its new state.
Result<kube::Object> PutClaimed(kube::Client& client, const kube::Resource& r, std::string_view ns,
                                const kube::Object& next, std::string_view kind);

}  // namespace fsb::coordinator
